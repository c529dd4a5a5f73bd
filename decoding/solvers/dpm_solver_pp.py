"""DPM-Solver++ multistep (Lu et al., arXiv 2211.01095): 2M, 3M and the SDE variant.

Data-prediction exponential integrator in ``lambda = log(alpha/sigma)``, step ``h = lambda_t - lambda_s``:

- order 1 (= DDIM): ``x_t = (sigma_t/sigma_s) x - alpha_t (e^{-h} - 1) m0``;
- order 2 (2M): adds ``D1 = (m0 - m1) / r0`` (``r0 = h_0 / h``) with coefficient ``-alpha_t (e^{-h}-1)/2``
  ("midpoint", the paper's 2M and diffusers' default) or ``alpha_t ((e^{-h}-1)/h + 1)`` ("heun",
  the exact integral of the linear interpolant);
- order 3 (3M): ``D1, D2`` from three points. ``third_order="taylor"`` integrates the quadratic
  interpolant exactly (coefficient ``-2 alpha_t phi_3`` on ``D2 = h^2 m''/2``), which gives
  third-order convergence. ``third_order="dpmsolver"`` uses the coefficient ``-alpha_t phi_3`` of
  the reference DPM-Solver code and diffusers' ``DPMSolverMultistepScheduler``; that term is then
  half the exact one, so the scheme converges at second order only (measured in
  ``tests/solvers/test_convergence.py``). Use it to reproduce diffusers step for step.
- SDE-DPM-Solver++ (``sde=True``): ``x_t = (sigma_t/sigma_s) e^{-h} x + alpha_t (1 - e^{-2h}) (D0 + ...)
  + sigma_t sqrt(1 - e^{-2h}) z``, diffusers' ``algorithm_type="sde-dpmsolver++"``.

CFG++ (Chung et al., arXiv 2406.08070), the paper's multistep sampler: when the prediction carries
the unconditional data prediction (``Prediction.extras["x0_uncond"] = u``, set by
:class:`~decoding.wrappers.guidance.GuidedModel` for CFG++), the step uses the guided ``m0`` but
renoises with the unconditional noise, which is the update from ``x + alpha_s (m0 - u)`` instead of
``x`` (``x = alpha_s u + sigma_s eps_u``), and the history keeps ``u`` instead of ``m0``: the 2M step is
``x_t = alpha_t m0 + sigma_t eps_u + alpha_t (1 - e^{-h}) (m0 - u_{i-1}) / (2 r)``. At ``lambda = 0``
(``m0 = u``) the shift is exactly zero: the unconditional solver, bit for bit.

Lower orders at the start (warm-up) and, as in diffusers, at the end: the step onto data
(``sigma = 0``) is first order (``x = m0``); with ``lower_order_final`` and fewer than 15 steps the
last step is first order and the one before at most second order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from decoding.core.types import Prediction
from decoding.solvers.base import StepInfo
from decoding.solvers.history import MultistepHistory
from decoding.solvers.parameterization import data_prediction

SOLVER_TYPES = ("midpoint", "heun")
THIRD_ORDER = ("taylor", "dpmsolver")


def _differences(x0s: tuple[Tensor, ...], lams: tuple[float, ...], h: float, order: int) -> tuple[Tensor | None, ...]:
    """``(D1, D2)`` of the multistep update (``None`` where the order does not need them)."""
    m0 = x0s[0]
    if order == 1:
        return None, None
    r0 = (lams[0] - lams[1]) / h
    d1_0 = (m0 - x0s[1]) / r0
    if order == 2:
        return d1_0, None
    r1 = (lams[1] - lams[2]) / h
    d1_1 = (x0s[1] - x0s[2]) / r1
    return d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1), (d1_0 - d1_1) / (r0 + r1)


def dpmpp_update(
    x: Tensor,
    x0s: tuple[Tensor, ...],
    lams: tuple[float, ...],
    lam_t: float,
    alpha_t: float,
    sigma_t: float,
    sigma_s: float,
    order: int,
    solver_type: str = "midpoint",
    third_order: str = "taylor",
) -> Tensor:
    """One multistep DPM-Solver++ step from ``lams[0]`` to ``lam_t`` of ``order`` (1-3).

    Args:
        x: sample at ``s`` ``(B, ...)``; ``x0s``/``lams``: data predictions and lambdas, newest first.
        alpha_t, sigma_t, sigma_s: schedule values at the target and at ``s``.
    """
    if sigma_t == 0.0:
        return x0s[0]
    h = lam_t - lams[0]
    e = math.expm1(-h)
    out = (sigma_t / sigma_s) * x - (alpha_t * e) * x0s[0]
    d1, d2 = _differences(x0s, lams, h, order)
    if order == 2:
        if solver_type == "midpoint":
            return out - 0.5 * (alpha_t * e) * d1
        return out + (alpha_t * (e / h + 1.0)) * d1
    if order == 3:
        phi3 = (e + h) / h**2 - 0.5
        scale = 2.0 if third_order == "taylor" else 1.0
        return out + (alpha_t * (e / h + 1.0)) * d1 - (scale * alpha_t * phi3) * d2
    return out


def sde_dpmpp_update(
    x: Tensor,
    x0s: tuple[Tensor, ...],
    lams: tuple[float, ...],
    lam_t: float,
    alpha_t: float,
    sigma_t: float,
    sigma_s: float,
    order: int,
    noise: Tensor,
    solver_type: str = "midpoint",
) -> Tensor:
    """One SDE-DPM-Solver++ step (orders 1-3, diffusers' ``sde-dpmsolver++``); ``noise`` ``~ N(0, I)``."""
    if sigma_t == 0.0:
        return x0s[0]
    h = lam_t - lams[0]
    e2 = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
    out = (sigma_t / sigma_s * math.exp(-h)) * x + (alpha_t * e2) * x0s[0] + (sigma_t * math.sqrt(e2)) * noise
    d1, d2 = _differences(x0s, lams, h, order)
    if order == 2:
        if solver_type == "midpoint":
            return out + 0.5 * (alpha_t * e2) * d1
        return out + (alpha_t * (e2 / (-2.0 * h) + 1.0)) * d1
    if order == 3:
        c2 = (e2 - 2.0 * h) / (2.0 * h) ** 2 - 0.5
        return out + (alpha_t * (e2 / (-2.0 * h) + 1.0)) * d1 + (alpha_t * c2) * d2
    return out


@dataclass(frozen=True)
class DPMSolverPP:
    """Multistep DPM-Solver++ as a :class:`~decoding.solvers.base.Solver`.

    Args:
        order: 1, 2 (2M) or 3 (3M).
        solver_type: second-order variant, ``"midpoint"`` or ``"heun"``.
        third_order: ``"taylor"`` (exact, third order) or ``"dpmsolver"`` (reference/diffusers coefficients).
        sde: SDE-DPM-Solver++ (stochastic; needs noise every step).
        lower_order_final: diffusers' rule for grids of fewer than 15 steps (see module docstring).
        euler_at_final: always take a first-order last step.
    """

    order: int = 2
    solver_type: str = "midpoint"
    third_order: str = "taylor"
    sde: bool = False
    lower_order_final: bool = True
    euler_at_final: bool = False
    #: the time grid measured best for this solver on the trained models (docs/perf/solvers.md)
    default_spacing: ClassVar[str] = "logsnr_trunc"

    def __post_init__(self) -> None:
        if self.order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {self.order}")
        if self.solver_type not in SOLVER_TYPES:
            raise ValueError(f"solver_type must be one of {SOLVER_TYPES}, got {self.solver_type!r}")
        if self.third_order not in THIRD_ORDER:
            raise ValueError(f"third_order must be one of {THIRD_ORDER}, got {self.third_order!r}")

    @property
    def stochastic(self) -> bool:
        return self.sde

    @property
    def min_steps(self) -> int:
        return self.order

    def step_order(self, info: StepInfo, available: int) -> int:
        """The order used on step ``info.i`` with ``available`` predictions in the history."""
        n, i = info.n_steps, info.i
        order = min(self.order, available)
        last = i == n - 1
        if info.to_data or (last and (self.euler_at_final or (self.lower_order_final and n < 15))):
            return 1
        if i == n - 2 and self.lower_order_final and n < 15:
            return min(order, 2)
        return order

    def step(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None
    ) -> tuple[Tensor, MultistepHistory]:
        a_s, s_s, l_s = info.s
        a_t, s_t, l_t = info.t
        hist = history if history is not None else MultistepHistory()
        m0 = data_prediction(pred, x, a_s, s_s)
        hist = hist.push(m0, l_s, float(info.ts[info.i]), self.order)
        order = self.step_order(info, len(hist))
        uncond = pred.extras.get("x0_uncond")
        if uncond is not None:  # CFG++: renoise with the unconditional noise (see the module docstring)
            x = x + a_s * (m0 - uncond)
        if self.sde and s_t > 0:
            if noise is None:
                raise ValueError("SDE-DPM-Solver++ needs noise")
            out = sde_dpmpp_update(x, hist.x0s, hist.lams, l_t, a_t, s_t, s_s, order, noise, self.solver_type)
        else:
            out = dpmpp_update(x, hist.x0s, hist.lams, l_t, a_t, s_t, s_s, order, self.solver_type, self.third_order)
        return out, (hist if uncond is None else hist.with_newest(uncond))
