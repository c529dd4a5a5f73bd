"""Per-row constraints as one :class:`~decoding.core.protocols.Constraint` (a batch of different requests).

Row ``r`` follows ``constraints[r]``, a constraint over one row (e.g. a grammar with that request's
token budget), or ``None``: every token is allowed. Masks, advances, rollbacks and reweighting
(grammar-aligned decoding) are delegated row by row, so each row sees what it would see alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from decoding.core.protocols import Constraint
from decoding.core.row_views import row_view
from decoding.core.types import State


class RowConstraints:
    """Row ``r`` constrained by ``constraints[r]`` (batch size 1) or unconstrained (``None``).

    Args:
        constraints: one entry per row.
        vocab_size: width ``V`` of the logits (the mask of unconstrained rows).
        device: where :meth:`mask` returns its ``(B, V)`` tensor.
    """

    def __init__(self, constraints: Sequence[Constraint | None], vocab_size: int, device: torch.device | str = "cpu"):
        self.constraints = list(constraints)
        self.vocab_size = int(vocab_size)
        self.device = torch.device(device)
        self._all = torch.ones(self.vocab_size, dtype=torch.bool, device=self.device)
        self._reweighting = [r for r, c in enumerate(self.constraints) if c is not None and hasattr(c, "reweight")]

    @property
    def batch_size(self) -> int:
        return len(self.constraints)

    def _check(self, rows: int) -> None:
        if rows != len(self.constraints):
            raise ValueError(f"{len(self.constraints)} row constraints for a batch of {rows} rows")

    def mask(self, state: State) -> Tensor:
        """``(B, V)`` bool on ``device``."""
        self._check(state.batch_size)
        rows = []
        for r, c in enumerate(self.constraints):
            if c is None:
                rows.append(self._all)
                continue
            m = c.mask(row_view(state, [r]))
            if m.shape != (1, self.vocab_size):
                raise ValueError(f"row {r}'s constraint gave a mask of shape {tuple(m.shape)}, expected (1, {self.vocab_size})")
            rows.append(m[0].to(self.device))
        return torch.stack(rows)

    def reweight(self, logits: Tensor, state: State) -> Tensor:
        """Rows whose constraint reweights (grammar-aligned decoding) get their own reweighting."""
        if not self._reweighting:
            return logits
        out = logits.clone()
        for r in self._reweighting:
            out[r : r + 1] = self.constraints[r].reweight(logits[r : r + 1], row_view(state, [r]))
        return out

    def advance(self, tokens: Tensor) -> None:
        ids = tokens.reshape(-1)
        self._check(int(ids.numel()))
        for r, c in enumerate(self.constraints):
            if c is not None:
                c.advance(ids[r : r + 1])

    def is_complete(self) -> Tensor:
        """``(B,)`` bool; unconstrained rows count as complete."""
        return torch.tensor([True if c is None else bool(c.is_complete()[0]) for c in self.constraints])

    def rollback(self, n: int) -> None:
        for c in self.constraints:
            if c is not None:
                c.rollback(n)

    def fork(self) -> RowConstraints:
        return RowConstraints([None if c is None else c.fork() for c in self.constraints], self.vocab_size, self.device)
