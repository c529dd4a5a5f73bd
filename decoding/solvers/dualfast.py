"""DualFast (Yu, Luo, Wang & Zhao, arXiv 2506.13058) as a wrapper around any data-prediction solver.

DualFast splits the sampling error into discretisation error (what high-order solvers reduce) and
the network's approximation error, which the paper finds shrinks as the step (noise level) grows.
It lowers the approximation error without extra model calls by mixing in the prediction made at a
larger step ``tau``; here ``tau`` is the first step of the grid (cached, no extra NFE):

``x0~_i = x0_i + c_i (x0_i - x0_tau)``, ``c_i = c * (t_i - t_last) / (t_0 - t_last)``

(the mixing weight decays to 0 towards the end of the grid), and the wrapped solver (DDIM,
DPM-Solver++, UniPC) takes ``x0~_i`` in place of ``x0_i``.

Caveat (read before relying on it): the paper's method section could not be read in the
environment this was written in (only its abstract and a summary of its error analysis were
reachable); the update above is our reconstruction of its "approximation-error reduction" step
(a prediction from a larger step mixed in with a decaying coefficient, no extra NFE), not a
transcription of the paper's equations. ``c = 0`` recovers the wrapped solver
exactly. On the closed-form denoisers of this project the network error is zero by construction,
so any gain measured there is a change of the discretisation error, not of approximation error.

Measured on the trained fashion-large UNet (``evals/image.toml``, 2026-12-06): this reconstruction
does NOT converge to the ODE solution as NFE grows (RMS error to a 100-step RK4 reference 0.198 /
0.188 / 0.244 / 0.270 at 5 / 10 / 20 / 50 steps, FID-2k about 50 against DPM-Solver++(2M)'s 17.5):
the mixing weight decays over the grid, not with the step size, so the update solves a different
ODE at every NFE. Treat it as an experiment, not a solver, until it is rebuilt from the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from decoding.core.types import Prediction
from decoding.solvers.base import Solver, StepInfo
from decoding.solvers.parameterization import data_prediction


@dataclass(frozen=True)
class DualFastHistory:
    """The reference prediction ``x0_tau`` and the wrapped solver's own history."""

    x0_ref: Tensor
    inner: Any


@dataclass(frozen=True)
class DualFast:
    """Wrap ``base`` (any solver consuming ``Prediction.x0``) with DualFast's prediction mixing.

    Args:
        base: the solver to accelerate.
        c: mixing strength at the start of the grid (0 = the base solver).
    """

    base: Solver
    c: float = 0.5

    @property
    def order(self) -> int:
        return self.base.order

    @property
    def stochastic(self) -> bool:
        return self.base.stochastic

    @property
    def min_steps(self) -> int:
        return self.base.min_steps

    def weight(self, info: StepInfo) -> float:
        """``c_i``: ``c`` at the first step, decaying linearly in time to 0 at the last step's start."""
        t0, t_last, ti = float(info.ts[0]), float(info.ts[-2]), float(info.ts[info.i])
        if t0 == t_last:
            return self.c
        return self.c * (ti - t_last) / (t0 - t_last)

    def step(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None
    ) -> tuple[Tensor, DualFastHistory]:
        a_s, s_s, _ = info.s
        x0 = data_prediction(pred, x, a_s, s_s)
        if history is None:
            history = DualFastHistory(x0_ref=x0, inner=None)
        mixed = x0 + self.weight(info) * (x0 - history.x0_ref)
        out, inner = self.base.step(x, Prediction(x0=mixed, memory=pred.memory, extras=pred.extras), info, history.inner, noise)
        return out, DualFastHistory(history.x0_ref, inner)
