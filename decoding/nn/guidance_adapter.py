"""Guidance adapters of adapter guidance distillation (AGD; Jensen & Sadat, arXiv 2503.07274) for the image UNet.

AGD keeps a trained diffusion model frozen and adds small adapters, conditioned on the guidance
scale, that make ONE call approximate the classifier-free-guided prediction. The paper's offset
("additive") adapter adds, after a block, a vector that depends on the conditioning only: here,
after every stage of :class:`~decoding.nn.unet.UNet` (encoder, middle, decoder), a per-channel offset
``(B, width)`` broadcast over the feature map, computed from

- the guidance scale ``s`` (the engine's CFG scale, ``u + s (c - u)``) through random Fourier
  features ``cos(2 pi (f s + p))`` (frequencies ``f ~ N(0, freq_std^2)``, phases ``p ~ U[0, 1)``,
  fixed by a seed and stored with the weights) and a small MLP with a LayerNorm;
- the UNet's own embedding of the noise level and the class (the ``e`` its residual blocks read),
  projected to the adapter width (the paper's ``use_timestep`` / ``use_class_label`` with the
  base model's embedders).

Each stage's output layer starts at zero, so a new adapter set changes nothing: with adapters the
UNet computes exactly the base model's output until training moves them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from decoding.nn.unet import config_from_dict


@dataclass
class AdapterConfig:
    """Sizes of a :class:`GuidanceAdapters` set.

    Attributes:
        widths: channels of each UNet stage output, in forward order (:meth:`UNet.stage_widths`).
        emb_dim: width of the UNet's noise-level + class embedding.
        hidden: width of the adapters' conditioning vector and hidden layers.
        fourier: number of random Fourier features of the guidance scale.
        freq_std: standard deviation of the Fourier frequencies (in cycles per unit of scale).
        seed: seed of the Fourier frequencies and phases.
    """

    widths: Sequence[int]
    emb_dim: int
    hidden: int = 48
    fourier: int = 64
    freq_std: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"adapter widths must be positive, got {self.widths}")
        for name in ("emb_dim", "hidden", "fourier"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"adapter {name} must be >= 1, got {getattr(self, name)}")
        if not self.freq_std > 0:
            raise ValueError(f"adapter freq_std must be > 0, got {self.freq_std}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        """Build from a dict; unknown keys are a ValueError naming them."""
        return config_from_dict(cls, d, "adapter")


class FourierFeatures(nn.Module):
    """``s (B,) -> cos(2 pi (f s + p)) (B, dim)`` with fixed random ``f ~ N(0, std^2)``, ``p ~ U[0, 1)``.

    The frequencies and phases are float32 buffers drawn from ``seed`` (saved with the weights).
    """

    def __init__(self, dim: int, std: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("frequencies", std * torch.randn(dim, generator=g))
        self.register_buffer("phases", torch.rand(dim, generator=g))

    def forward(self, s: Tensor) -> Tensor:
        """``s`` ``(B,)`` -> ``(B, dim)`` float32 features."""
        arg = s.float()[:, None] * self.frequencies.float()[None, :] + self.phases.float()[None, :]
        return torch.cos(2 * math.pi * arg)


class GuidanceAdapters(nn.Module):
    """One offset per UNet stage from the guidance scale and the UNet's embedding: ``(e, s) -> [(B, width_i)]``."""

    def __init__(self, cfg: AdapterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.fourier = FourierFeatures(cfg.fourier, cfg.freq_std, cfg.seed)
        self.scale_mlp = nn.Sequential(nn.Linear(cfg.fourier, h), nn.SiLU(), nn.Linear(h, h), nn.LayerNorm(h))
        self.emb_proj = nn.Linear(cfg.emb_dim, h)
        self.heads = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, w)) for w in cfg.widths)
        for head in self.heads:
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(self, e: Tensor, scale: Tensor) -> list[Tensor]:
        """``e`` ``(B, emb_dim)`` (the UNet's noise-level + class embedding), ``scale`` ``(B,)`` -> offsets ``(B, width_i)``."""
        dtype = self.emb_proj.weight.dtype
        c = self.scale_mlp(self.fourier(scale).to(dtype)) + self.emb_proj(e.to(dtype))
        return [head(c) for head in self.heads]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
