"""A closed-form denoiser as a :class:`~decoding.core.protocols.Model` for the continuous process."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.solvers.parameterization import PREDICTION_TYPES, bcast, check_schedule, to_prediction
from decoding.solvers.schedules import VPSchedule


class Denoiser(Protocol):
    """``denoise(x, alpha, sigma) -> E[x0 | x]`` for ``x`` ``(B, ...)``, ``alpha``/``sigma`` scalars or ``(B,)``."""

    def denoise(self, x: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor: ...


class ClosedFormModel:
    """Wrap a closed-form denoiser so the decode loop can call it: ``model(state) -> Prediction(x0, eps)``.

    Args:
        denoiser: e.g. :class:`~decoding.denoisers.GaussianData`, :class:`~decoding.denoisers.EmpiricalData`.
        schedule: the schedule whose times ``state.t`` are in; ``None`` takes the process's schedule
            from ``state.memory["schedule"]``. If both are given they must agree.
        output: ``"x0"`` (default) or ``"eps"``/``"v"``: the model then reports its output as a
            network of that parameterisation would, converted back through
            :func:`~decoding.solvers.parameterization.to_prediction` (exercises the conversions).
    """

    def __init__(self, denoiser: Denoiser, schedule: VPSchedule | None = None, output: str = "x0") -> None:
        if output not in PREDICTION_TYPES:
            raise ValueError(f"output must be one of {PREDICTION_TYPES}, got {output!r}")
        self.denoiser, self.schedule, self.output = denoiser, schedule, output

    def _schedule(self, state: State) -> VPSchedule:
        if self.schedule is not None:
            check_schedule(self.schedule, state)
            return self.schedule
        sched = state.memory.get("schedule")
        if sched is None:
            raise ValueError("ClosedFormModel needs a schedule: pass schedule= or run it under ContinuousProcess")
        return sched

    def __call__(self, state: State) -> Prediction:
        sched = self._schedule(state)
        t = state.t.to(torch.float64).cpu()
        alpha, sigma = sched.alpha(t).to(state.x.device), sched.sigma(t).to(state.x.device)
        if bool((sigma <= 0).any()):
            raise ValueError("the denoiser was asked for a prediction at sigma = 0 (clean data)")
        x0 = self.denoiser.denoise(state.x, alpha, sigma).to(state.x.dtype)
        if self.output == "x0":
            return to_prediction(x0, "x0", state.x, alpha, sigma)
        pred = to_prediction(x0, "x0", state.x, alpha, sigma)
        raw = pred.eps if self.output == "eps" else _v(state.x, x0, pred.eps, alpha, sigma)
        return to_prediction(raw, self.output, state.x, alpha, sigma)


def _v(x: Tensor, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return bcast(alpha, x) * eps - bcast(sigma, x) * x0
