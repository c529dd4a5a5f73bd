"""Top-k truncation: keep the ``k`` largest logits of each row (Fan et al., arXiv 1805.04833)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from decoding.core.types import State
from decoding.processors._checks import check_min_tokens


@dataclass(frozen=True)
class TopK:
    """Keep every token whose logit is at least the ``k``-th largest; the rest get ``-inf``.

    Tokens tied with the ``k``-th largest logit are all kept (as in transformers'
    ``TopKLogitsWarper``), so a row may keep more than ``k`` tokens. ``k`` is raised to
    ``min_tokens_to_keep`` and clipped to the vocabulary size.
    """

    stateless: ClassVar[bool] = True  # reads only the logits: graph-safe (decoding.processors.graphed)

    k: int
    min_tokens_to_keep: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"top-k needs an integer k >= 1, got {self.k!r} (use no TopK to keep every token)")
        check_min_tokens(self.min_tokens_to_keep)

    def __call__(self, logits: Tensor, state: State | None = None) -> Tensor:
        """``logits`` ``(..., V)`` -> new ``(..., V)`` with all but the top ``k`` set to ``-inf``."""
        k = min(max(self.k, self.min_tokens_to_keep), logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))
