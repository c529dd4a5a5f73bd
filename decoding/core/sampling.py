"""Exact categorical sampling from logits with an explicit generator.

Uses the exponential race: ``argmax_i p_i / E_i`` with ``E_i ~ Exp(1)`` i.i.d. picks ``i`` with
probability ``p_i`` exactly; it needs no host synchronisation, works batched on any device and
respects ``-inf`` logits (probability 0 is never drawn). With a
:class:`~decoding.core.rows.RowGenerators` every row draws its race from its own stream, so a row's
sample does not depend on the rows it is batched with.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_categorical(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """Draw one index per row from ``softmax(logits)``.

    Args:
        logits: ``(..., V)``; ``-inf`` marks impossible entries. Each row needs one finite entry.
        generator: random source on ``logits.device``, or one per row along the first dimension
            (:class:`~decoding.core.rows.RowGenerators`).

    Returns:
        ``(...)`` long indices.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    if hasattr(generator, "exponential_like"):  # RowGenerators: one stream per row
        race = generator.exponential_like(probs)
    else:
        race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)
