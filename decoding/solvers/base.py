"""What every solver sees: the grid (:class:`StepInfo`) and the solver protocol (:class:`Solver`).

Solvers follow k-diffusion's rule: a step is a pure function of the current sample, the model's
prediction, where we are on the grid and an explicit history (returned, never hidden in the
object). ``Solver.step(x, pred, info, history, noise) -> (x_next, history)``; the first call gets
``history=None``. Stochastic solvers receive their Gaussian ``noise`` (same shape as ``x``) from
the caller, which draws it from the run's ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from decoding.core.types import Prediction
from decoding.solvers.schedules import VPSchedule


@dataclass(frozen=True)
class StepInfo:
    """Where step ``i`` (from ``ts[i]`` to ``ts[i + 1]``) sits on the grid.

    Attributes:
        ts: float64 ``(N + 1,)`` times; ``lambdas``, ``alphas``, ``sigmas`` the same on each.
        i: index of this step, ``0 <= i < N``.
        schedule: the schedule the grid lives on.
        source: the grid tensor given to :meth:`make` (lets a caller reuse the values for the
            next step of the same grid).
    """

    ts: Tensor
    lambdas: Tensor
    alphas: Tensor
    sigmas: Tensor
    i: int
    schedule: VPSchedule

    source: Tensor | None = field(default=None, compare=False, repr=False)  # the grid tensor it was made from

    @classmethod
    def make(cls, schedule: VPSchedule, ts: Tensor, i: int) -> StepInfo:
        f64 = ts.to(torch.float64).cpu()
        return cls(f64, schedule.lambda_(f64), schedule.alpha(f64), schedule.sigma(f64), int(i), schedule, source=ts)

    @property
    def n_steps(self) -> int:
        return int(self.ts.numel()) - 1

    @property
    def remaining(self) -> int:
        """Steps left including this one (``N - i``)."""
        return self.n_steps - self.i

    @property
    def to_data(self) -> bool:
        """This step ends at clean data (``sigma = 0``)."""
        return float(self.sigmas[self.i + 1]) == 0.0

    def lam(self, j: int) -> float:
        return float(self.lambdas[j])

    @property
    def h(self) -> float:
        """``lambda_{i+1} - lambda_i`` (``inf`` when the step ends at data)."""
        return float(self.lambdas[self.i + 1] - self.lambdas[self.i])

    @property
    def s(self) -> tuple[float, float, float]:
        """``(alpha, sigma, lambda)`` at the start of the step."""
        i = self.i
        return float(self.alphas[i]), float(self.sigmas[i]), float(self.lambdas[i])

    @property
    def t(self) -> tuple[float, float, float]:
        """``(alpha, sigma, lambda)`` at the end of the step."""
        i = self.i + 1
        lam = float(self.lambdas[i])
        return float(self.alphas[i]), float(self.sigmas[i]), (math.inf if math.isinf(lam) else lam)


@runtime_checkable
class Solver(Protocol):
    """A diffusion ODE/SDE solver.

    Attributes:
        order: the highest order it uses; grids need at least :attr:`min_steps` steps.
        stochastic: ``step`` needs ``noise``.
    """

    order: int
    stochastic: bool

    @property
    def min_steps(self) -> int: ...

    def step(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None
    ) -> tuple[Tensor, Any]: ...


def check_steps(solver: Any, steps: int, name: str | None = None) -> None:
    """Raise a ValueError when ``steps`` is fewer than ``solver.min_steps``."""
    need = int(getattr(solver, "min_steps", 1))
    if steps < need:
        label = name or type(solver).__name__
        raise ValueError(
            f"{label} of order {getattr(solver, 'order', '?')} needs at least {need} steps, got {steps}; "
            "use more steps or a lower order"
        )
