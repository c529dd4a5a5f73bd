"""UniPC (Zhao et al., arXiv 2302.04867): unified predictor (UniP) and corrector (UniC), B(h) variants.

Data prediction, ``h = lambda_t - lambda_s``, ``hh = -h``. With the previous points' ratios
``r_k = (lambda_{s_k} - lambda_s) / h`` and differences ``D_k = (m_k - m0) / r_k``:

``x_t = (sigma_t/sigma_s) x - alpha_t (e^{hh} - 1) m0 - alpha_t B(h) sum_k rho_k D_k``

where ``B(h) = hh`` ("bh1") or ``e^{hh} - 1`` ("bh2") and ``rho`` solves ``R rho = g`` with
``R_{jk} = r_k^{j-1}`` and ``g_j = h phi_{j+1}(hh) j! / B(h)``. The predictor UniP-p uses ``p-1``
previous points (``rho = 1/2`` for p = 2); the corrector UniC-p adds the model output at the new
point ``x_t`` (``rho = 1/2`` for p = 1) and raises the order by one at no extra model call: it is
applied at the start of the next step, after the model has been evaluated at the predicted point.
Equal step for step to diffusers' ``UniPCMultistepScheduler`` (``predict_x0=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from decoding.core.types import Prediction
from decoding.solvers.base import StepInfo
from decoding.solvers.history import MultistepHistory
from decoding.solvers.parameterization import data_prediction

VARIANTS = ("bh1", "bh2")


def unipc_coefficients(h: float, rks: list[float], order: int, variant: str) -> tuple[float, float, Tensor, Tensor]:
    """``(e^{hh} - 1, B(h), R, g)`` for an order-``order`` UniP/UniC step; ``rks`` excludes the final 1."""
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = hh if variant == "bh1" else math.expm1(hh)
    r = torch.tensor(list(rks) + [1.0], dtype=torch.float64)
    rows, g = [], []
    factorial = 1
    for k in range(1, order + 1):
        rows.append(r ** (k - 1))
        g.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    return h_phi_1, b_h, torch.stack(rows), torch.tensor(g, dtype=torch.float64)


def _combine(rhos: Tensor, ds: list[Tensor]) -> Tensor | float:
    out: Tensor | float = 0.0
    for rho, d in zip(rhos.tolist(), ds, strict=True):
        out = out + rho * d
    return out


def unip_update(
    x: Tensor,
    x0s: tuple[Tensor, ...],
    lams: tuple[float, ...],
    lam_t: float,
    alpha_t: float,
    sigma_t: float,
    sigma_s: float,
    order: int,
    variant: str = "bh2",
) -> Tensor:
    """UniP-``order`` from ``lams[0]`` to ``lam_t``; ``x0s``/``lams`` newest first (``x0s[0]`` at ``x``)."""
    m0 = x0s[0]
    if sigma_t == 0.0:
        return m0
    h = lam_t - lams[0]
    rks = [(lams[k] - lams[0]) / h for k in range(1, order)]
    ds = [(x0s[k] - m0) / rks[k - 1] for k in range(1, order)]
    h_phi_1, b_h, r, g = unipc_coefficients(h, rks, order, variant)
    out = (sigma_t / sigma_s) * x - (alpha_t * h_phi_1) * m0
    if order == 1:
        return out
    rhos = torch.tensor([0.5], dtype=torch.float64) if order == 2 else torch.linalg.solve(r[:-1, :-1], g[:-1])
    return out - (alpha_t * b_h) * _combine(rhos, ds)


def unic_update(
    x_last: Tensor,
    x0s: tuple[Tensor, ...],
    lams: tuple[float, ...],
    model_t: Tensor,
    lam_t: float,
    alpha_t: float,
    sigma_t: float,
    sigma_s: float,
    order: int,
    variant: str = "bh2",
) -> Tensor:
    """UniC-``order``: recompute the sample at ``lam_t`` from ``x_last`` (at ``lams[0]``) using ``model_t``.

    ``x0s``/``lams`` are the history before ``model_t`` was added (``x0s[0]`` at ``x_last``).
    """
    m0 = x0s[0]
    h = lam_t - lams[0]
    rks = [(lams[k] - lams[0]) / h for k in range(1, order)]
    ds = [(x0s[k] - m0) / rks[k - 1] for k in range(1, order)]
    h_phi_1, b_h, r, g = unipc_coefficients(h, rks, order, variant)
    rhos = torch.tensor([0.5], dtype=torch.float64) if order == 1 else torch.linalg.solve(r, g)
    out = (sigma_t / sigma_s) * x_last - (alpha_t * h_phi_1) * m0
    corr = _combine(rhos[:-1], ds) + float(rhos[-1]) * (model_t - m0)
    return out - (alpha_t * b_h) * corr


@dataclass(frozen=True)
class UniPC:
    """Multistep UniPC as a :class:`~decoding.solvers.base.Solver`.

    Args:
        order: predictor order p (1-3); with the corrector the scheme has order p + 1.
        variant: ``"bh1"`` or ``"bh2"``.
        corrector: apply UniC.
        disable_corrector: step indices whose *result* is not corrected (diffusers' meaning).
        lower_order_final: use order ``min(p, steps left)`` near the end (diffusers' rule).
    """

    order: int = 2
    variant: str = "bh2"
    corrector: bool = True
    disable_corrector: tuple[int, ...] = ()
    lower_order_final: bool = True

    def __post_init__(self) -> None:
        if self.order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {self.order}")
        if self.variant not in VARIANTS:
            raise ValueError(f"UniPC variant must be one of {VARIANTS}, got {self.variant!r}")

    stochastic = False
    #: the time grid measured best for this solver on the trained models (docs/perf/solvers.md)
    default_spacing: ClassVar[str] = "logsnr_trunc"

    @property
    def min_steps(self) -> int:
        return self.order

    def step_order(self, info: StepInfo) -> int:
        order = min(self.order, info.i + 1)
        if self.lower_order_final:
            order = min(order, info.remaining)
        return 1 if info.to_data else order

    def correct(self, x: Tensor, m: Tensor, info: StepInfo, hist: MultistepHistory) -> Tensor:
        """UniC on the current sample ``x`` (at ``ts[i]``) given its prediction ``m``; no-op on step 0."""
        i = info.i
        if not self.corrector or hist.last_x is None or (i - 1) in self.disable_corrector:
            return x
        a_c, s_c, l_c = info.s
        s_prev = float(info.sigmas[i - 1])
        return unic_update(hist.last_x, hist.x0s, hist.lams, m, l_c, a_c, s_c, s_prev, hist.last_order, self.variant)

    def step(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None, keep: int = 0
    ) -> tuple[Tensor, MultistepHistory]:
        hist, x, order = self.begin(x, pred, info, history, keep)
        return self.finish(x, info, hist, order)

    def begin(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, keep: int = 0
    ) -> tuple[MultistepHistory, Tensor, int]:
        """Correct ``x``, add the new prediction to the history; returns ``(history, x, predictor order)``."""
        a_s, s_s, l_s = info.s
        hist = history if history is not None else MultistepHistory()
        m = data_prediction(pred, x, a_s, s_s)
        x = self.correct(x, m, info, hist)
        hist = hist.push(m, l_s, float(info.ts[info.i]), max(self.order, keep))
        return hist, x, self.step_order(info)

    def finish(self, x: Tensor, info: StepInfo, hist: MultistepHistory, order: int) -> tuple[Tensor, MultistepHistory]:
        """The UniP predictor from the (corrected) ``x`` with the (possibly compensated) history."""
        _, s_s, _ = info.s
        a_t, s_t, l_t = info.t
        out = unip_update(x, hist.x0s, hist.lams, l_t, a_t, s_t, s_s, order, self.variant)
        return out, replace(hist, last_x=x, last_order=order)
