"""Nucleus (top-p) truncation (Holtzman et al., arXiv 1904.09751)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from decoding.core.types import State
from decoding.processors._checks import check_min_tokens
from decoding.processors.cut import check_method, top_p_drop, use_search


@dataclass(frozen=True)
class TopP:
    """Keep the smallest set of most likely tokens whose probability adds up to at least ``p``.

    Precisely (the rule of transformers' ``TopPLogitsWarper``): sort the tokens by logit in
    ascending order with ``torch.sort`` (equal logits in its deterministic order, as
    transformers) and drop each token whose cumulative probability,
    counted from the least likely one up to and including itself, is ``<= 1 - p``. The
    ``min_tokens_to_keep`` most likely tokens are always kept. ``p = 1`` keeps every token.

    ``method="search"`` finds the same cut without sorting the vocabulary
    (:mod:`decoding.processors.cut`: static shapes, no host synchronisation, CUDA-graph safe);
    ``method="kernel"`` is the same search, bit for bit, in a few Triton launches
    (:mod:`decoding.processors.cut_kernel`; needs triton and CUDA logits, or CPU logits under
    ``TRITON_INTERPRET=1``);
    ``method="sort"`` is the sorted reference; ``"auto"`` (default) takes the kernel for CUDA logits of
    up to 64 rows (:func:`~decoding.processors.cut_kernel.use_kernel`: 2.2x-3.6x faster than the sort
    there, measured on an H100), sorts for more rows of CUDA logits, and elsewhere searches under ``torch.compile`` and sorts when
    eager (:func:`~decoding.processors.cut.use_search`). They keep the same set, except that within the
    tie group the cut passes through (equal logits), "search" keeps the highest ids (the order of
    a stable sort) where "sort" keeps whichever ``torch.sort``'s unstable order put last (the
    same number of them). Logits of any float dtype are cut on their float32 probabilities.
    """

    stateless: ClassVar[bool] = True  # reads only the logits: graph-safe (decoding.processors.graphed)

    p: float
    min_tokens_to_keep: int = 1
    method: str = "auto"

    def __post_init__(self) -> None:
        if not (0.0 < float(self.p) <= 1.0):
            raise ValueError(f"top-p mass must be in (0, 1], got {self.p}")
        check_min_tokens(self.min_tokens_to_keep)
        check_method(self.method, kernel=True)
        if self.method == "kernel":
            from decoding.processors.cut_kernel import triton

            if triton is None:
                raise RuntimeError("TopP(method='kernel') needs triton (pip install triton, CUDA); "
                                   "use method='search' or 'sort' without it")

    def __call__(self, logits: Tensor, state: State | None = None) -> Tensor:
        """``logits`` ``(..., V)`` -> new ``(..., V)`` with the tail outside the nucleus set to ``-inf``."""
        if self.method == "kernel" or (self.method == "auto" and logits.device.type == "cuda"):
            from decoding.processors.cut_kernel import top_p_filter_kernel, use_kernel

            if use_kernel(self.method, logits):
                flat = logits.reshape(-1, logits.shape[-1])
                return top_p_filter_kernel(flat, self.p, self.min_tokens_to_keep).reshape(logits.shape)
        return self._sort_or_search(logits)

    def _sort_or_search(self, logits: Tensor) -> Tensor:
        if use_search(self.method, logits.device):
            flat = logits.reshape(-1, logits.shape[-1])
            drop = top_p_drop(flat, self.p, self.min_tokens_to_keep).reshape(logits.shape)
            return logits.masked_fill(drop, float("-inf"))
        ascending, order = torch.sort(logits, dim=-1)  # same (unstable) sort as transformers: same tie order
        tail_mass = torch.softmax(ascending, dim=-1).cumsum(dim=-1)
        drop_sorted = tail_mass <= (1.0 - float(self.p))
        keep = min(self.min_tokens_to_keep, logits.shape[-1])
        drop_sorted[..., logits.shape[-1] - keep :] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))
