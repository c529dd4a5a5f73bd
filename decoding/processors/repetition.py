"""Repetition penalty (Keskar et al., CTRL, arXiv 1909.05858)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from decoding.core.types import State


@dataclass(frozen=True)
class RepetitionPenalty:
    """Penalise every token that already occurs in the row (prompt included), once per token.

    A seen token's logit ``z`` becomes ``z / penalty`` when ``z > 0`` and ``z * penalty`` otherwise,
    so ``penalty > 1`` makes repeats less likely and ``penalty < 1`` more likely. Positions where
    ``state.memory["attention_mask"]`` is False (left padding, the padding of finished rows) do
    not count. This is transformers' ``RepetitionPenaltyLogitsProcessor`` as ``generate()`` sets
    it up (it also skips the left padding of the prompt).

    The processor reads ``state.x`` ``(B, L)``, so it needs a token state (not a latent).
    """

    penalty: float

    def __post_init__(self) -> None:
        if not (float(self.penalty) > 0):
            raise ValueError(f"repetition penalty must be > 0 (1.0 = no penalty), got {self.penalty}")

    def __call__(self, logits: Tensor, state: State | None = None) -> Tensor:
        """``logits`` ``(B, V)`` -> new ``(B, V)``; needs ``state.x`` ``(B, L)`` long."""
        if state is None or state.x.dtype != torch.long or state.x.dim() != 2:
            raise ValueError("RepetitionPenalty needs the token state (state.x of shape (B, L), long)")
        if logits.dim() != 2 or logits.shape[0] != state.x.shape[0]:
            raise ValueError(f"RepetitionPenalty expects (B, V) logits for B={state.x.shape[0]}, got {tuple(logits.shape)}")
        v = logits.shape[-1]
        ids = state.x.to(logits.device).clamp(max=v)  # ids beyond the logits go to a spare column
        valid = state.memory.get("attention_mask") if state.memory else None
        if valid is not None:
            ids = ids.masked_fill(~valid[:, : ids.shape[1]].to(ids.device, torch.bool), v)
        seen = torch.zeros(logits.shape[0], v + 1, dtype=torch.bool, device=logits.device)
        seen = seen.scatter(1, ids, True)[:, :v]
        penalised = torch.where(logits > 0, logits / float(self.penalty), logits * float(self.penalty))
        return torch.where(seen, penalised, logits)
