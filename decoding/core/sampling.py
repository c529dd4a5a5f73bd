"""Exact categorical sampling from logits with an explicit generator.

Uses the exponential race: ``argmax_i p_i / E_i`` with ``E_i ~ Exp(1)`` i.i.d. picks ``i`` with
probability ``p_i`` exactly; it needs no host synchronisation, works batched on any device and
respects ``-inf`` logits (probability 0 is never drawn).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_categorical(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """Draw one index per row from ``softmax(logits)``.

    Args:
        logits: ``(..., V)``; ``-inf`` marks impossible entries. Each row needs one finite entry.
        generator: random source on ``logits.device``.

    Returns:
        ``(...)`` long indices.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)
