"""A small VQ autoencoder (VQ-VAE, arXiv 1711.00937) that turns 28x28 Fashion-MNIST images into a grid of tokens.

Design (the tokenizer of the image AR model and of Distilled Decoding, arXiv 2412.17153):

- ``grid`` 7 (default) or 14: two or one stride-2 stages, so a token covers 4x4 or 2x2 pixels;
  7x7 = 49 tokens keeps the AR teacher at 49 network calls per image.
- A low-dimensional codebook (``code_dim`` 8, ``codebook_size`` 256) with l2-normalised codes and
  cosine lookup (as LlamaGen's tokenizer, arXiv 2406.06525): the codes lie on the unit sphere of
  R^8, where DD's per-token flow moves Gaussian noise (:mod:`decoding.dd.flow`).
- Straight-through gradients, the codebook and commitment losses of VQ-VAE, and restarts of codes
  that fell out of use (their usage is an EMA buffer; a dead code is replaced by an encoder output
  of the current batch).

Images are ``(B, 1, 28, 28)`` in [-1, 1]; tokens are ``(B, grid * grid)`` long in raster order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decoding.data.weights import load_tensors, save_model_folder

VQ_FORMAT = "decoding-vq"
KIND = "image-tokenizer"


@dataclass
class VQConfig:
    """Sizes of a :class:`VQAutoencoder`.

    Attributes:
        codebook_size: number of codes K. code_dim: their dimension D. width: channels of the
        first stage (the 7x7 stage has twice as many). grid: tokens per side (7 or 14).
        image_size: pixels per side (28).
    """

    codebook_size: int = 256
    code_dim: int = 8
    width: int = 64
    grid: int = 7
    image_size: int = 28

    def __post_init__(self) -> None:
        if self.grid not in (7, 14) or self.image_size != 28:
            raise ValueError(f"the VQ autoencoder maps 28x28 images to a 7x7 or 14x14 grid, got grid={self.grid}, "
                             f"image_size={self.image_size}")
        for name in ("codebook_size", "code_dim", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"VQConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.width % 8:
            raise ValueError(f"VQConfig.width must be a multiple of 8 (group norm of 8 groups), got {self.width}")

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Res(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class VQAutoencoder(nn.Module):
    """Encoder -> l2-normalised nearest code -> decoder."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        deep = cfg.grid == 7
        wd = 2 * w if deep else w
        enc: list[nn.Module] = [nn.Conv2d(1, w, 3, padding=1), _Res(w), nn.Conv2d(w, w, 4, stride=2, padding=1), _Res(w)]
        if deep:
            enc += [nn.Conv2d(w, wd, 4, stride=2, padding=1), _Res(wd)]
        enc += [nn.GroupNorm(8, wd), nn.SiLU(), nn.Conv2d(wd, cfg.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_dim, wd, 3, padding=1), _Res(wd)]
        if deep:
            dec += [nn.ConvTranspose2d(wd, w, 4, stride=2, padding=1), _Res(w)]
        dec += [nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), _Res(w), nn.GroupNorm(8, w), nn.SiLU(),
                nn.Conv2d(w, 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.codebook = nn.Parameter(torch.randn(cfg.codebook_size, cfg.code_dim))
        self.register_buffer("usage", torch.ones(cfg.codebook_size))

    @property
    def codes(self) -> Tensor:
        """``(K, D)`` the l2-normalised codebook (the vectors tokens stand for)."""
        return F.normalize(self.codebook, dim=-1)

    def encode_latent(self, images: Tensor) -> Tensor:
        """``(B, 1, 28, 28)`` -> ``(B, L, D)`` l2-normalised encoder outputs (raster order)."""
        _check_images(images, self.cfg)
        z = self.encoder(images)
        return F.normalize(z.flatten(2).transpose(1, 2), dim=-1)

    def nearest(self, z: Tensor) -> Tensor:
        """``(..., D)`` unit vectors -> ``(...)`` long: the code of largest cosine similarity."""
        return (z @ self.codes.t()).argmax(-1)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """``(B, 1, 28, 28)`` in [-1, 1] -> tokens ``(B, L)`` long."""
        return self.nearest(self.encode_latent(images))

    def decode_vectors(self, vectors: Tensor) -> Tensor:
        """``(B, L, D)`` code vectors -> images ``(B, 1, 28, 28)`` (unclamped)."""
        b, n, d = vectors.shape
        g = self.cfg.grid
        if n != g * g or d != self.cfg.code_dim:
            raise ValueError(f"decode_vectors needs (B, {g * g}, {self.cfg.code_dim}) vectors, got {tuple(vectors.shape)}")
        return self.decoder(vectors.transpose(1, 2).reshape(b, d, g, g))

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """Tokens ``(B, L)`` long -> images ``(B, 1, 28, 28)`` clamped to [-1, 1]."""
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"decode needs (B, L) long tokens, got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.codebook_size):
            raise ValueError(f"tokens must lie in [0, {self.cfg.codebook_size}), got [{int(tokens.min())}, {int(tokens.max())}]")
        return self.decode_vectors(self.codes[tokens]).clamp(-1, 1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Training pass: ``(reconstruction, z, quantised z, tokens)``; gradients reach the encoder straight through."""
        z = self.encode_latent(images)
        tokens = self.nearest(z.detach())
        q = self.codes[tokens]
        recon = self.decode_vectors(z + (q - z).detach())
        return recon, z, q, tokens

    @torch.no_grad()
    def restart_dead_codes(self, z: Tensor, tokens: Tensor, generator: torch.Generator, decay: float = 0.99,
                           threshold: float = 0.03) -> None:
        """Update the usage EMA with ``tokens`` and move codes used less than ``threshold`` x the mean onto random
        encoder outputs ``z`` ``(..., D)`` of this batch (no host synchronisation: every code draws a candidate)."""
        k = self.cfg.codebook_size
        counts = torch.bincount(tokens.flatten(), minlength=k).float()
        self.usage.mul_(decay).add_(counts * ((1 - decay) * k / max(tokens.numel(), 1)))
        dead = self.usage < threshold
        flat = z.detach().reshape(-1, z.shape[-1])
        pick = torch.randint(0, flat.shape[0], (k,), generator=generator, device=flat.device)
        self.codebook.data.copy_(torch.where(dead[:, None], flat[pick].to(self.codebook.dtype), self.codebook.data))
        self.usage.copy_(torch.where(dead, torch.ones_like(self.usage), self.usage))


def _check_images(images: Tensor, cfg: VQConfig) -> None:
    s = cfg.image_size
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, s, s):
        raise ValueError(f"the VQ autoencoder takes (B, 1, {s}, {s}) images in [-1, 1], got {tuple(images.shape)}")


def vq_losses(images: Tensor, out: tuple[Tensor, Tensor, Tensor, Tensor], beta: float = 0.25) -> Tensor:
    """VQ-VAE's loss ``|x - x^|^2 + |sg(z) - q|^2 + beta |z - sg(q)|^2`` of ``out = model(images)``."""
    recon, z, q, _ = out
    rec = F.mse_loss(recon.float(), images.float())
    code = F.mse_loss(q.float(), z.detach().float())
    commit = F.mse_loss(z.float(), q.detach().float())
    return rec + code + beta * commit


def save_vq(model: VQAutoencoder, folder: str | Path, extra: dict[str, Any] | None = None,
            dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json`` (kind ``image-tokenizer``) and ``model.safetensors``."""
    config = {"kind": KIND, "format": VQ_FORMAT, "vq": model.cfg.to_dict(), **(extra or {})}
    state = {k: v for k, v in model.state_dict().items() if k != "usage"}
    return save_model_folder(folder, state, config, dtype=dtype, metadata={"format": VQ_FORMAT})


def load_vq(folder: str | Path, device: torch.device | str = "cpu") -> VQAutoencoder:
    """The VQ autoencoder of a folder written by :func:`save_vq` (float32, eval mode)."""
    import json

    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a VQ tokenizer folder")
    card = json.loads(cfg_path.read_text())
    if card.get("format") != VQ_FORMAT:
        raise ValueError(f"{cfg_path} is not a VQ tokenizer (format {card.get('format')!r}, expected {VQ_FORMAT!r})")
    model = VQAutoencoder(VQConfig(**card["vq"]))
    state, _ = load_tensors(folder / "model.safetensors")
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if unexpected or set(missing) - {"usage"}:
        raise ValueError(f"{folder}/model.safetensors does not match its config: missing {missing}, unexpected {unexpected}")
    return model.to(device).eval()
