"""Decode attention through PyTorch's FlexAttention (arXiv 2412.05496): one key mask per row as a ``score_mod``.

A decode step has ``G`` queries per key/value head (the query heads that share it, grouped-query attention) against
``S`` cache slots, of which a per-row mask ``valid (B, S)`` says which hold a token. FlexAttention expresses the mask
as a score modification (a very low score where a slot is empty) and, under ``torch.compile``, generates the kernel:
for short queries inductor's flex-decoding template (split over the keys, ``tl.dot`` on the inputs' dtype with
float32 accumulation), inside the compiled step's own graph, so the step stays one CUDA graph. Eagerly (and on the
CPU) it runs PyTorch's reference implementation, which materialises the scores: a correctness path, not a fast one.
:class:`~decoding.adapters.static_cache.StaticCausalLM` compiles it on CUDA only (torch 2.13's CPU flex template gave
NaN logits in some runs with 3-4 threads).
The empty slots' score is finite (:data:`EMPTY`), so a row without any valid slot gets the plain average of its
values (SDPA gives NaN there, :func:`decoding.nn.attention.naive_attention` zeros); a decode step never has such a
row, as the token it decodes has just been written to a valid slot. (Zeroing such rows after the kernel is an epilogue
that torch 2.13's CPU flex template cannot fuse.)
"""

from __future__ import annotations

import torch
from torch import Tensor

# The score of an empty slot: finite, not -inf. A kernel that splits the keys (flex decoding) combines each split's
# partial result with weight exp(lse_split - lse_max): a split of empty slots then weighs exp(-1e30 - lse_max) = 0
# exactly, and an empty slot beside a valid one weighs exp(-1e30 - max) = 0 in float32 just as -inf would; with -inf
# a split of empty slots is 0/0 unless the kernel guards it.
EMPTY = -1e30


def flex_available() -> bool:
    """Whether this torch has FlexAttention (``torch.nn.attention.flex_attention``, torch 2.5+)."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def flex_decode_attention(q: Tensor, k: Tensor, v: Tensor, valid: Tensor, scale: float) -> Tensor:
    """Attention of ``q`` ``(B, Hkv, G, D)`` (the ``G`` query heads of each key/value head) over ``k, v``
    ``(B, Hkv, S, D)`` where ``valid`` ``(B, S)`` (bool) is True; returns ``(B, Hkv, G, D)`` in ``q``'s dtype (a row
    without a valid slot: the average of its values, see the module's notes)."""
    from torch.nn.attention.flex_attention import flex_attention

    if valid.shape != (q.shape[0], k.shape[2]) or valid.dtype != torch.bool:
        raise ValueError(f"valid must be a (B, S) = {(q.shape[0], k.shape[2])} bool mask, got {tuple(valid.shape)} "
                         f"{valid.dtype}")

    def keep(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return torch.where(valid[b, kv_idx], score, EMPTY)

    return flex_attention(q, k, v, score_mod=keep, scale=scale)
