"""Locally typical sampling (Meister, Pimentel, Wiher, Cotterell; arXiv 2202.00666).

At each step the model's next-token distribution ``p`` has entropy ``H = -sum p log p``. A token's
*typicality gap* is ``| -log p(token) - H |``: how far its information content is from the
expected one. Typical sampling keeps the tokens with the smallest gaps until their probability
adds up to the mass ``tau`` (the token that crosses ``tau`` is kept), and samples among them.
Unlike nucleus sampling it can drop the most likely token when that token carries far less
information than expected, which is what curbs repetition loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from decoding.core.types import State
from decoding.processors._checks import check_min_tokens
from decoding.processors.cut import check_method, typical_drop, use_search


@dataclass(frozen=True)
class Typical:
    """Keep the most typical tokens up to probability mass ``mass`` (``tau`` in the paper).

    Rule (identical to transformers' ``TypicalLogitsWarper``, ties included): sort tokens by
    typicality gap, ascending, with ``torch.sort`` (its order among equal gaps is deterministic for
    a given input and device, and it is the order transformers uses); let ``c`` be the first sorted position
    whose cumulative probability reaches ``mass``; keep every token whose gap is at most the gap
    at ``c`` (so tokens tied with it are kept too) plus the first ``min_tokens_to_keep`` sorted
    tokens. Tokens already at ``-inf`` carry no probability and are never revived.

    Args:
        mass: ``tau`` in (0, 1); the paper recommends 0.2 for story generation and 0.9 or 0.95
            for summarisation.
        min_tokens_to_keep: at least this many tokens survive.
        method: ``"search"`` finds the limit without sorting the vocabulary
            (:mod:`decoding.processors.cut`: static shapes, no host synchronisation, CUDA-graph
            safe); ``"sort"`` is the sorted reference; ``"auto"`` (default) sorts on CUDA (faster
            there, measured on an H100) and elsewhere searches under ``torch.compile`` and sorts
            when eager (:func:`~decoding.processors.cut.use_search`). Both keep the same set (every token tied
            with the limit is kept either way); only the ``min_tokens_to_keep`` fill-up may pick
            other ids among equal gaps ("search": lowest ids first, a stable sort's order).

    Logits of any float dtype are processed in float32 for "search".
    """

    stateless: ClassVar[bool] = True  # reads only the logits: graph-safe (decoding.processors.graphed)

    mass: float
    min_tokens_to_keep: int = 1
    method: str = "auto"

    def __post_init__(self) -> None:
        if not (0.0 < float(self.mass) < 1.0):
            raise ValueError(f"typical mass must be in (0, 1), got {self.mass}")
        check_min_tokens(self.min_tokens_to_keep)
        check_method(self.method)

    def __call__(self, logits: Tensor, state: State | None = None) -> Tensor:
        """``logits`` ``(..., V)`` -> new ``(..., V)`` with atypical tokens set to ``-inf``."""
        v = logits.shape[-1]
        if use_search(self.method, logits.device):
            flat = logits.reshape(-1, v)
            gap = typicality_gap(flat.float())
            drop = typical_drop(gap, torch.softmax(flat.float(), dim=-1), self.mass, self.min_tokens_to_keep)
            return logits.masked_fill(drop.reshape(logits.shape), float("-inf"))
        gap = typicality_gap(logits)
        gap_sorted, order = torch.sort(gap, dim=-1)  # same (unstable) sort as transformers: same tie order
        mass_sorted = torch.softmax(logits.gather(-1, order), dim=-1).cumsum(dim=-1)
        crossing = (mass_sorted < float(self.mass)).sum(dim=-1, keepdim=True).clamp(max=v - 1)
        limit = gap_sorted.gather(-1, crossing)
        drop_sorted = gap_sorted > limit
        drop_sorted[..., : min(self.min_tokens_to_keep, v)] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))


def typicality_gap(logits: Tensor) -> Tensor:
    """``| -log p - H |`` per token, ``(..., V)`` (``+inf`` for impossible tokens), as transformers computes it."""
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    entropy = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(dim=-1, keepdim=True)
    return (-logp - entropy).abs()
