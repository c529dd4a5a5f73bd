"""A class-conditional UNet for small images (Fashion-MNIST, 28x28 gray), in two sizes.

The layout follows DDPM / ADM (Ho et al., arXiv:2006.11239; Dhariwal & Nichol, arXiv:2105.05233):
an encoder of residual blocks with strided downsampling, a middle block with self-attention, and
a decoder that concatenates the encoder's skip activations. The network is conditioned on the
half log-SNR ``lambda = log(alpha / sigma)`` of the noisy input (see :mod:`decoding.nn.embeddings`) and on a class label, where index
``num_classes`` is the null class of classifier-free guidance. What the output means (eps or v)
is a property of the checkpoint, handled by :mod:`decoding.models.image`.

Every self-attention layer goes through :func:`decoding.nn.attention.attention` and can be
perturbed for PAG with :meth:`UNet.perturbed_attention`. Guidance adapters (AGD, arXiv 2503.07274;
:mod:`decoding.nn.guidance_adapter`) attach per call: ``net(x, lam, labels, scale, adapters=A)`` adds
``A``'s offset after every stage (:meth:`UNet.stage_widths`); without ``adapters`` nothing changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from decoding.nn.embeddings import ClassEmbedding, GuidanceEmbedding, NoiseLevelEmbedding
from decoding.nn.resblock import Downsample, ResBlock, Upsample, group_norm
from decoding.nn.self_attention import SelfAttention2d


@dataclass
class UNetConfig:
    """Sizes of a :class:`UNet`.

    Attributes:
        image_size: height = width of the input (28 for Fashion-MNIST).
        in_channels: image channels (1 for gray).
        channels: width of the first level.
        channel_mult: width multiplier per level; one downsampling between levels.
        num_res_blocks: residual blocks per encoder level (the decoder has one more).
        attention_levels: indices of the levels that get self-attention after each block
            (the middle block always has one).
        head_dim: channels per attention head.
        num_classes: number of labels; index ``num_classes`` is the null (unconditional) class.
        dropout: dropout inside residual blocks.
        emb_features: sinusoidal features of the noise level ``lambda`` (and of the guidance weight).
        guidance_embedding: also condition on a guidance weight ``w`` (B,), embedded like the noise
            level (a guidance-distilled student, arXiv 2210.03142); off for the plain models, whose
            configs do not list the key.
    """

    image_size: int = 28
    in_channels: int = 1
    channels: int = 64
    channel_mult: Sequence[int] = field(default_factory=lambda: (1, 2, 2))
    num_res_blocks: int = 2
    attention_levels: Sequence[int] = field(default_factory=lambda: (1, 2))
    head_dim: int = 32
    num_classes: int = 10
    dropout: float = 0.0
    emb_features: int = 64
    guidance_embedding: bool = False

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.attention_levels = tuple(int(a) for a in self.attention_levels)
        if self.channels < 1 or not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"channels and channel_mult must be positive, got {self.channels}, {self.channel_mult}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        bad = [a for a in self.attention_levels if not 0 <= a < len(self.channel_mult)]
        if bad:
            raise ValueError(f"attention_levels {bad} out of range for {len(self.channel_mult)} levels")
        for m in self.channel_mult:
            if (self.channels * m) % self.head_dim:
                raise ValueError(f"level width {self.channels * m} is not a multiple of head_dim {self.head_dim}")
        if self.image_size % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**{len(self.channel_mult) - 1} "
                "(one halving between levels)"
            )
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")

    @property
    def null_class(self) -> int:
        """The label that means "no class" (classifier-free guidance's unconditional branch)."""
        return self.num_classes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_levels"] = list(self.attention_levels)
        if not self.guidance_embedding:  # plain models keep the config they always had
            del d["guidance_embedding"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Build from a dict; unknown keys are a ValueError naming them."""
        return config_from_dict(cls, d, "UNet")


def config_from_dict(cls: type, d: dict, what: str) -> Any:
    """``cls(**d)`` for a config dataclass; unknown keys are a ValueError naming them and the known ones."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what} config keys {unknown}; known keys: {sorted(known)}")
    return cls(**d)


class UNet(nn.Module):
    """``x (B, C, H, W), lam (B,), labels (B,) long[, guidance (B,)] -> (B, C, H, W)``."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, emb = cfg.channels, 4 * cfg.channels
        self.noise_emb = NoiseLevelEmbedding(cfg.emb_features, emb)
        self.class_emb = ClassEmbedding(cfg.num_classes, emb)
        self.guidance_emb = GuidanceEmbedding(cfg.emb_features, emb) if cfg.guidance_embedding else None
        self.stem = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        widths = [ch * m for m in cfg.channel_mult]
        self.down = nn.ModuleList()
        skips = [ch]
        cur = ch
        for level, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._stage(cur, width, emb, level in cfg.attention_levels))
                cur = width
                skips.append(cur)
            if level < len(widths) - 1:
                self.down.append(Downsample(cur))
                skips.append(cur)

        self.mid = self._stage(cur, cur, emb, True)
        self.mid_out = ResBlock(cur, cur, emb, cfg.dropout)

        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(self._stage(cur + skips.pop(), width, emb, level in cfg.attention_levels))
                cur = width
            if level > 0:
                self.up.append(Upsample(cur))

        self.out_norm = group_norm(cur)
        self.out = nn.Conv2d(cur, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _stage(self, c_in: int, c_out: int, emb: int, attend: bool) -> nn.ModuleList:
        layers: list[nn.Module] = [ResBlock(c_in, c_out, emb, self.cfg.dropout)]
        if attend:
            layers.append(SelfAttention2d(c_out, self.cfg.head_dim))
        return nn.ModuleList(layers)

    @staticmethod
    def _run(stage: nn.Module, h: Tensor, e: Tensor) -> Tensor:
        if isinstance(stage, nn.ModuleList):
            h = stage[0](h, e)
            for layer in stage[1:]:
                h = layer(h)
            return h
        return stage(h)

    def stage_widths(self) -> list[int]:
        """Output channels of every stage (residual block + attention) in forward order: encoder, middle, decoder."""
        stages = [*[s for s in self.down if isinstance(s, nn.ModuleList)], self.mid, *[s for s in self.up if isinstance(s, nn.ModuleList)]]
        return [stage[0].conv1.out_channels for stage in stages]

    def forward(
        self, x: Tensor, lam: Tensor, labels: Tensor, guidance: Tensor | None = None, adapters: nn.Module | None = None
    ) -> Tensor:
        """Predict the network target (eps or v) for noisy images ``x`` at noise level ``lam``.

        Args:
            x: ``(B, in_channels, image_size, image_size)``.
            lam: ``(B,)`` float, the half log-SNR ``log(alpha / sigma)`` of each row.
            labels: ``(B,)`` long in ``[0, num_classes]``; ``num_classes`` is the null class.
            guidance: ``(B,)`` float guidance weights; required exactly when the config has
                ``guidance_embedding`` or ``adapters`` are given (then: the CFG scale they read).
            adapters: guidance adapters (:class:`~decoding.nn.guidance_adapter.GuidanceAdapters`),
                ``adapters(e, guidance)`` -> one ``(B, width)`` offset per stage, added after it.

        Returns:
            ``(B, in_channels, image_size, image_size)`` in the dtype of the computation.
        """
        e = self.noise_emb(lam) + self.class_emb(labels)
        offsets = None
        if adapters is not None:
            if self.guidance_emb is not None:
                raise ValueError("guidance adapters attach to a plain UNet; this one has a guidance embedding")
            if guidance is None:
                raise ValueError("guidance adapters read the CFG scale: pass guidance (B,)")
            offsets = iter(adapters(e, guidance))
        elif self.guidance_emb is not None:
            if guidance is None:
                raise ValueError("this UNet is conditioned on the guidance weight (guidance_embedding=True): pass guidance (B,)")
            e = e + self.guidance_emb(guidance)
        elif guidance is not None:
            raise ValueError("this UNet takes no guidance weight (guidance_embedding=False); drop the guidance argument")

        def run(stage: nn.Module, h: Tensor) -> Tensor:
            h = self._run(stage, h, e)
            if offsets is not None and isinstance(stage, nn.ModuleList):
                h = h + next(offsets).to(h.dtype)[:, :, None, None]
            return h

        h = self.stem(x)
        hs = [h]
        for stage in self.down:
            h = run(stage, h)
            hs.append(h)
        h = self.mid_out(run(self.mid, h), e)
        for stage in self.up:
            if isinstance(stage, nn.ModuleList):
                h = torch.cat([h, hs.pop()], dim=1)
            h = run(stage, h)
        return self.out(nn.functional.silu(self.out_norm(h)))

    def attention_layers(self) -> list[SelfAttention2d]:
        """The self-attention layers, in forward order (encoder, middle, decoder)."""
        return [m for m in self.modules() if isinstance(m, SelfAttention2d)]

    @contextlib.contextmanager
    def perturbed_attention(
        self, rows: Tensor | None = None, layers: Sequence[int] | None = None
    ) -> Iterator[None]:
        """Within the block, selected self-attention layers use identity attention (PAG).

        Args:
            rows: ``(B,)`` bool: which batch rows are perturbed (default: all rows).
            layers: indices into :meth:`attention_layers` (default: all of them; PAG's paper
                perturbs the middle block, ``[len(layers) // 2]`` here).
        """
        all_layers = self.attention_layers()
        chosen = range(len(all_layers)) if layers is None else layers
        bad = [i for i in chosen if not 0 <= i < len(all_layers)]
        if bad:
            raise ValueError(f"attention layer indices {bad} out of range: this UNet has {len(all_layers)}")
        before = [layer.perturb for layer in all_layers]
        try:
            for i in chosen:
                all_layers[i].perturb = True if rows is None else rows.bool()
            yield
        finally:
            for layer, p in zip(all_layers, before, strict=True):
                layer.perturb = p

    def set_attention_backend(self, backend: str | None) -> None:
        """Force an attention backend (``"xformers"``, ``"sdpa"``, ``"naive"``; None = automatic)."""
        for layer in self.attention_layers():
            layer.backend = backend
