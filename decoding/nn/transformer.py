"""A small pre-norm transformer (RMSNorm, rotary positions, SwiGLU, grouped-query attention).

One module serves the engine's own models: causal language models (with a KV cache) and
bidirectional denoisers (RADD, any-subset models) — the difference is the attention mask.
All attention goes through :func:`decoding.nn.attention.attention` (xformers on CUDA).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decoding.nn.attention import attention


@dataclass
class TransformerConfig:
    """Sizes of a :class:`Transformer`.

    Attributes:
        vocab_size: number of token ids (include any mask token).
        dim: model width; ``dim % n_heads == 0``.
        n_layers, n_heads, n_kv_heads: depth, query heads, key/value heads (GQA when fewer).
        hidden: SwiGLU hidden width (default ``8/3 * dim`` rounded to 64).
        max_len: longest sequence (rotary table size).
        causal: causal LM (True) or bidirectional encoder (False).
        rope_theta: rotary base.
        tie_embeddings: share input and output embeddings.
        norm_eps: RMSNorm epsilon.
        dropout: training-time dropout probability on the token embeddings and on the output of every
            residual branch (attention and SwiGLU) before it is added (GPT-2's ``embd_pdrop`` /
            ``resid_pdrop``; Srivastava et al. JMLR 2014). Active only in ``train()`` mode; ``0``
            (default) skips it entirely, so outputs and random streams equal a model without it.
    """

    vocab_size: int
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    hidden: int | None = None
    max_len: int = 1024
    causal: bool = True
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.hidden is None:
            self.hidden = 64 * ((8 * self.dim // 3 + 63) // 64)

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rotary_tables(max_len: int, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos, sin tables ``(max_len, head_dim // 2)``."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(max_len, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``(B, H, L, D)`` by per-position tables ``(B, 1, L, D/2)`` (half-split convention)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


def residual_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``x`` with dropout ``p`` when ``training`` and ``p > 0`` (no random draw otherwise)."""
    return F.dropout(x, p, training=True) if training and p > 0 else x


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.dim // cfg.n_heads
        self.head_dim = hd
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.q = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.kv = nn.Linear(cfg.dim, 2 * cfg.n_kv_heads * hd, bias=False)
        self.o = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.hidden, bias=False)
        self.down = nn.Linear(cfg.hidden, cfg.dim, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: tuple[Tensor, Tensor] | None,
        mask: Tensor | None,
        causal: bool,
        backend: str | None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, n, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(b, n, self.cfg.n_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(h).view(b, n, 2, self.cfg.n_kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        a = attention(q, k, v, causal=causal and mask is None, mask=mask, backend=backend)
        p = self.cfg.dropout
        x = x + residual_dropout(self.o(a.transpose(1, 2).reshape(b, n, -1)), p, self.training)
        g, u = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + residual_dropout(self.down(F.silu(g) * u), p, self.training), (k, v)


class Transformer(nn.Module):
    """Token transformer: ``tokens (B, L) -> logits (B, L, V)``."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rotary_tables(cfg.max_len, cfg.dim // cfg.n_heads, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(
        self,
        tokens: Tensor,
        positions: Tensor | None = None,
        cache: list[tuple[Tensor, Tensor]] | None = None,
        mask: Tensor | None = None,
        backend: str | None = None,
        return_hidden: bool = False,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Run the network.

        Args:
            tokens: ``(B, L)`` ids.
            positions: ``(B, L)`` rotary positions (default ``past + arange(L)``).
            cache: per-layer ``(k, v)`` of the past, each ``(B, Hkv, Lpast, D)``.
            mask: bool ``(B, 1|H, L, Lpast + L)`` (True = attend); replaces the causal mask.
            backend: attention backend override.
            return_hidden: return final hidden states ``(B, L, dim)`` instead of logits.

        Returns:
            logits ``(B, L, V)`` (or hidden states) and the new per-layer cache.
        """
        b, n = tokens.shape
        past = 0 if cache is None else cache[0][0].shape[2]
        if positions is None:  # the largest position is known on the host: no device sync
            if past + n > self.cfg.max_len:
                raise ValueError(f"position {past + n - 1} exceeds the model's max_len {self.cfg.max_len}")
            positions = (past + torch.arange(n, device=tokens.device)).expand(b, n)
        elif positions.device.type == "cpu" and int(positions.max()) >= self.cfg.max_len:  # (on a GPU: not checked, no sync)
            raise ValueError(f"position {int(positions.max())} exceeds the model's max_len {self.cfg.max_len}")
        cos = self.rope_cos[positions][:, None]
        sin = self.rope_sin[positions][:, None]
        x = residual_dropout(self.embed(tokens), self.cfg.dropout, self.training)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, None if cache is None else cache[i], mask, self.cfg.causal, backend)
            new_cache.append(kv)
        x = self.norm(x)
        if return_hidden:
            return x, new_cache
        w = self.embed.weight if self.head is None else self.head.weight
        return x @ w.t(), new_cache


def check_token_ids(tokens: Tensor, vocab_size: int) -> None:
    """Refuse token ids outside ``[0, vocab_size)`` with a message naming them (an embedding lookup would fail with a
    bare ``IndexError``, or on CUDA a device-side assert). ``tokens``: ``(B, n)`` long. One host read: callers check
    a prompt once (its prefill), never the one-token steps, whose ids the sampler drew from ``vocab_size`` logits."""
    if tokens.numel() == 0:
        return
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token id {bad} is outside the model's vocabulary [0, {vocab_size}): the prompt ids must come "
                         "from this model's tokenizer")
