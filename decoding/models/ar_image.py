"""A class-conditional causal transformer over a VQ token grid, and its engine model (KV cache, CFG).

The sequence of an image is ``[class, q_1, ..., q_n]`` (raster order of the VQ grid,
:mod:`decoding.models.vq`): ids ``0..K-1`` are codes, ``K + c`` is class ``c`` and ``K + C`` the null
class (label dropout in training makes the model unconditional there, for classifier-free guidance).
Position ``j`` predicts ``q_{j+1}``: the output head has ``K`` logits. The blocks are the engine's
pre-norm transformer blocks (:class:`decoding.nn.transformer.Block`: RMSNorm, rotary positions,
SwiGLU), so attention goes through :func:`decoding.nn.attention.attention`.

:class:`ARImageModel` is the engine model of the autoregressive process (``decoding.decode`` with
:class:`~decoding.processes.autoregressive.Autoregressive`): the prompt is the ``(B, 1)`` class
token, each call feeds the new token only and carries the per-layer KV cache in
``Prediction.memory["ar_cache"]``. With a guidance scale ``s != 1`` every call runs the conditional
and the null-class rows together (``2B`` rows, one cache) and returns ``u + s (c - u)`` (NFE 2 per row).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from decoding.core.types import Prediction, State
from decoding.data.weights import load_tensors
from decoding.nn.transformer import Block, RMSNorm, TransformerConfig, rotary_tables

KIND = "image-ar"
Cache = list[tuple[Tensor, Tensor]]


@dataclass
class ARConfig:
    """Sizes of an :class:`ARImageNet`.

    Attributes:
        codebook_size: K codes. num_tokens: n tokens per image. num_classes: C classes.
        dim, n_layers, n_heads, hidden: transformer sizes (``hidden`` default 8/3 dim rounded to 64).
    """

    codebook_size: int
    num_tokens: int
    num_classes: int = 10
    dim: int = 256
    n_layers: int = 8
    n_heads: int = 8
    hidden: int | None = None

    def __post_init__(self) -> None:
        for name in ("codebook_size", "num_tokens", "num_classes", "dim", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"ARConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def vocab(self) -> int:
        """Input ids: K codes, C classes, the null class."""
        return self.codebook_size + self.num_classes + 1

    @property
    def null_id(self) -> int:
        return self.codebook_size + self.num_classes

    def transformer(self) -> TransformerConfig:
        # max_len n + 1: the teacher uses n positions, a DD student n + 1 (class + one input per token)
        return TransformerConfig(vocab_size=self.vocab, dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads,
                                 hidden=self.hidden, max_len=self.num_tokens + 1, causal=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ARImageNet(nn.Module):
    """``[class, q_1..q_{L-1}]`` ``(B, L)`` -> next-code logits ``(B, L, K)``."""

    def __init__(self, cfg: ARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        tcfg = cfg.transformer()
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(Block(tcfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, tcfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.codebook_size, bias=False)
        cos, sin = rotary_tables(tcfg.max_len, cfg.dim // cfg.n_heads, tcfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)

    def run(self, h: Tensor, cache: Cache | None = None, backend: str | None = None) -> tuple[Tensor, Cache]:
        """Input embeddings ``(B, L, dim)`` after ``past`` cached positions -> logits ``(B, L, K)`` and the new cache."""
        b, n, _ = h.shape
        past = 0 if cache is None else cache[0][0].shape[2]
        if past + n > self.rope_cos.shape[0]:
            raise ValueError(f"sequence of {past + n} positions exceeds the model's {self.rope_cos.shape[0]}")
        pos = torch.arange(past, past + n, device=h.device)
        cos, sin = self.rope_cos[pos][None, None], self.rope_sin[pos][None, None]
        new: Cache = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, cos, sin, None if cache is None else cache[i], None, True, backend)
            new.append(kv)
        return self.head(self.norm(h)), new

    def forward(self, seq: Tensor, cache: Cache | None = None, backend: str | None = None) -> tuple[Tensor, Cache]:
        """``seq`` ``(B, L)`` ids (after the cached positions) -> logits ``(B, L, K)`` and the cache."""
        return self.run(self.embed(seq), cache, backend)


def guided(logits: Tensor, scale: float) -> Tensor:
    """``(2B, ..., K)`` logits, conditional rows first -> ``u + s (c - u)`` ``(B, ..., K)`` (log-softmax first)."""
    c, u = logits.float().log_softmax(-1).chunk(2, dim=0)
    return u + scale * (c - u)


class ARImageModel:
    """Engine model of the teacher: ``state -> Prediction(logits (B, K))`` with a KV cache and optional CFG.

    Args:
        net: the network. guidance: CFG scale ``s`` (1: conditional only, one call per token).
    """

    def __init__(self, net: ARImageNet, guidance: float = 1.0) -> None:
        self.net, self.guidance = net, float(guidance)
        self.cfg = net.cfg

    @property
    def device(self) -> torch.device:
        return self.net.head.weight.device

    def _rows(self, seq: Tensor) -> Tensor:
        if self.guidance == 1.0:
            return seq
        null = seq.clone()
        null[:, 0] = self.cfg.null_id
        return torch.cat([seq, null])

    @torch.no_grad()
    def __call__(self, state: State) -> Prediction:
        cache = state.memory.get("ar_cache")
        seq = state.x if cache is None else state.x[:, -1:]
        logits, new = self.net(self._rows(seq) if cache is None else self._feed(seq), cache)
        last = logits[:, -1].float()
        b = state.x.shape[0]
        if self.guidance == 1.0:
            return Prediction(logits=last, memory={"ar_cache": new})
        nfe = torch.full((b,), 2.0, device=last.device)
        return Prediction(logits=guided(last, self.guidance), nfe=nfe, memory={"ar_cache": new})

    def _feed(self, last: Tensor) -> Tensor:
        return last if self.guidance == 1.0 else torch.cat([last, last])

    @torch.no_grad()
    def all_logits(self, seq: Tensor) -> Tensor:
        """One pass without a cache: ``(B, L)`` ids -> guided next-code logits at every position ``(B, L, K)``."""
        logits, _ = self.net(self._rows(seq))
        return logits.float() if self.guidance == 1.0 else guided(logits, self.guidance)


def class_tokens(labels: Tensor, cfg: ARConfig) -> Tensor:
    """``(B,)`` class indices in ``[0, C]`` (``C`` = unconditional) -> the ``(B, 1)`` prompt of their class token."""
    if labels.dim() != 1 or labels.dtype != torch.long:
        raise ValueError(f"labels must be a (B,) long tensor, got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > cfg.num_classes):
        raise ValueError(f"labels must lie in [0, {cfg.num_classes}] ({cfg.num_classes} = unconditional)")
    return (labels + cfg.codebook_size)[:, None]


def load_ar_net(folder: str | Path, device: torch.device | str = "cpu", key: str = "ar") -> tuple[ARImageNet, dict[str, Any]]:
    """The network of a model folder whose card holds ``key`` (an :class:`ARConfig`), float32 eval; and the card."""
    folder = Path(folder)
    card = json.loads((folder / "config.json").read_text())
    if key not in card:
        raise ValueError(f"{folder}/config.json has no {key!r} entry (the transformer's sizes)")
    net = ARImageNet(ARConfig(**card[key]))
    state, _ = load_tensors(folder / "model.safetensors")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.to(device).eval(), card


def save_ar(net: ARImageNet, folder: str | Path, card: dict[str, Any], dtype: torch.dtype | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (``kind`` image-ar, ``ar`` sizes, plus ``card``: tokenizer, classes...)."""
    from decoding.data.weights import save_model_folder

    config = {"kind": KIND, "ar": net.cfg.to_dict(), **card}
    return save_model_folder(folder, net.state_dict(), config, dtype=dtype, metadata={"format": "decoding-image-ar"})
