"""The explicit history of multistep solvers (a frozen value carried in ``State.memory``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor


@dataclass(frozen=True)
class MultistepHistory:
    """Past data predictions of a multistep solver, newest first.

    Attributes:
        x0s: data predictions ``m_i, m_{i-1}, ...`` (each shaped like the sample).
        lams: their half log-SNRs ``lambda_i, lambda_{i-1}, ...``.
        ts: their times (DC-Solver interpolates in time).
        last_x: the sample the last predictor step started from (UniC corrects from it).
        last_order: the order of the last predictor step (0 before the first step).
        extra: solver-specific values (e.g. DualFast's reference prediction).
    """

    x0s: tuple[Tensor, ...] = ()
    lams: tuple[float, ...] = ()
    ts: tuple[float, ...] = ()
    last_x: Tensor | None = None
    last_order: int = 0
    extra: tuple = ()

    def push(self, x0: Tensor, lam: float, t: float, keep: int) -> MultistepHistory:
        """Prepend ``(x0, lam, t)`` and keep the ``keep`` newest entries."""
        return replace(
            self,
            x0s=((x0,) + self.x0s)[:keep],
            lams=((lam,) + self.lams)[:keep],
            ts=((t,) + self.ts)[:keep],
        )

    def with_newest(self, x0: Tensor) -> MultistepHistory:
        """Replace the newest data prediction (DC-Solver's compensation)."""
        return replace(self, x0s=(x0,) + self.x0s[1:])

    def __len__(self) -> int:
        return len(self.x0s)
