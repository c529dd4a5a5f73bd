"""Min-p truncation (Nguyen et al., arXiv 2407.01082): keep tokens with ``p >= min_p * p_max``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from decoding.core.types import State
from decoding.processors._checks import check_min_tokens


@dataclass(frozen=True)
class MinP:
    """Drop every token whose probability is below ``min_p`` times the row's largest probability.

    The ``min_tokens_to_keep`` most likely tokens are always kept (chosen with ``torch.topk``,
    as transformers' ``MinPLogitsWarper`` does). ``min_p = 0`` keeps every token. No sort, static
    shapes, no host synchronisation (CUDA-graph safe); with ``min_tokens_to_keep = 1`` the
    ``topk`` is skipped, since the most likely token always passes ``p >= min_p * p_max``.
    """

    stateless: ClassVar[bool] = True  # reads only the logits: graph-safe (decoding.processors.graphed)

    min_p: float
    min_tokens_to_keep: int = 1

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.min_p) <= 1.0):
            raise ValueError(f"min-p must be in [0, 1], got {self.min_p}")
        check_min_tokens(self.min_tokens_to_keep)

    def __call__(self, logits: Tensor, state: State | None = None) -> Tensor:
        """``logits`` ``(..., V)`` -> new ``(..., V)`` with improbable tokens set to ``-inf``."""
        probs = torch.softmax(logits, dim=-1)
        threshold = float(self.min_p) * probs.amax(dim=-1, keepdim=True)
        drop = probs < threshold
        if self.min_tokens_to_keep == 1:
            return logits.masked_fill(drop, float("-inf"))
        k = min(self.min_tokens_to_keep, logits.shape[-1])
        best = torch.topk(probs, k, dim=-1).indices
        drop = drop.scatter(-1, best, False)
        return logits.masked_fill(drop, float("-inf"))
