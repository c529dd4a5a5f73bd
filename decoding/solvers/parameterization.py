"""Model outputs as eps, x0 or v, converted in one place.

With ``x = alpha x0 + sigma eps``:

- ``eps`` (noise prediction, DDPM arXiv 2006.11239): ``x0 = (x - sigma eps) / alpha``;
- ``x0`` (data prediction): ``eps = (x - alpha x0) / sigma``;
- ``v`` (velocity, Salimans & Ho arXiv 2202.00512): ``v = alpha eps - sigma x0``, so
  ``x0 = alpha x - sigma v`` and ``eps = sigma x + alpha v``.

:func:`to_prediction` turns a raw network output into a :class:`Prediction` holding both ``x0``
and ``eps``; :func:`data_prediction` / :func:`noise_prediction` read whichever a solver needs from
a prediction that may hold only one of them (e.g. one made by a guidance wrapper).
:func:`velocity` is the inverse (``v`` of a prediction). :class:`NetworkModel` wraps a plain ``net(x, t)`` into a :class:`~decoding.core.protocols.Model`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.solvers.schedules import VPSchedule

PredictionType = Literal["eps", "x0", "v"]
PREDICTION_TYPES = ("eps", "x0", "v")


def bcast(v: Tensor | float, like: Tensor) -> Tensor:
    """``v`` (scalar or ``(B,)``) reshaped to broadcast against ``like`` ``(B, ...)`` in its dtype."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))


def _coef(v: Tensor | float, like: Tensor) -> Tensor | float:
    """:func:`bcast`, except that a Python number stays one.

    A device tensor made of a number is a host-to-device copy that synchronises with the GPU; the
    solvers call these conversions at every step with the schedule's numbers.
    """
    return float(v) if isinstance(v, (int, float)) else bcast(v, like)


def to_prediction(output: Tensor, kind: str, x: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Prediction:
    """Convert a network ``output`` of parameterisation ``kind`` at ``x`` ``(B, ...)`` to ``Prediction(x0, eps)``."""
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {kind!r}; choose one of {PREDICTION_TYPES}")
    if output.shape != x.shape:
        raise ValueError(f"model output shape {tuple(output.shape)} != state shape {tuple(x.shape)}")
    a, s = _coef(alpha, x), _coef(sigma, x)
    if kind == "eps":
        return Prediction(x0=(x - s * output) / a, eps=output)
    if kind == "x0":
        return Prediction(x0=output, eps=(x - a * output) / s)
    return Prediction(x0=a * x - s * output, eps=s * x + a * output)


def data_prediction(pred: Prediction, x: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor:
    """``x0`` of ``pred`` (from ``eps`` if only that is given)."""
    if pred.x0 is not None:
        return pred.x0
    if pred.eps is None:
        raise ValueError("a continuous solver needs Prediction.x0 or Prediction.eps; the model gave neither")
    return (x - _coef(sigma, x) * pred.eps) / _coef(alpha, x)


def velocity(pred: Prediction, x: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor:
    """``v = alpha eps - sigma x0`` of ``pred`` at ``x`` ``(B, ...)`` (the inverse of :func:`to_prediction` with ``"v"``)."""
    a, s = _coef(alpha, x), _coef(sigma, x)
    return a * noise_prediction(pred, x, alpha, sigma) - s * data_prediction(pred, x, alpha, sigma)


def noise_prediction(pred: Prediction, x: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor:
    """``eps`` of ``pred`` (from ``x0`` if only that is given)."""
    if pred.eps is not None:
        return pred.eps
    if pred.x0 is None:
        raise ValueError("a continuous solver needs Prediction.x0 or Prediction.eps; the model gave neither")
    return (x - _coef(alpha, x) * pred.x0) / _coef(sigma, x)


class NetworkModel:
    """A :class:`~decoding.core.protocols.Model` from a plain network ``net(x, t) -> output``.

    Args:
        net: called with ``x`` ``(B, ...)`` and ``t`` ``(B,)`` (the schedule's time; for a
            :class:`~decoding.solvers.schedules.DiscreteVPSchedule` the diffusers timestep).
        schedule: the schedule the network was trained with.
        prediction_type: what ``net`` predicts: ``"eps"``, ``"x0"`` or ``"v"``.
    """

    def __init__(self, net: Callable[[Tensor, Tensor], Tensor], schedule: VPSchedule, prediction_type: str = "eps"):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction type {prediction_type!r}; choose one of {PREDICTION_TYPES}")
        self.net, self.schedule, self.prediction_type = net, schedule, prediction_type

    def __call__(self, state: State) -> Prediction:
        check_schedule(self.schedule, state)
        t = state.t.to(torch.float64)
        out = self.net(state.x, state.t)
        return to_prediction(out, self.prediction_type, state.x, self.schedule.alpha(t), self.schedule.sigma(t))


def check_schedule(schedule: VPSchedule, state: State) -> None:
    """Raise if the process that made ``state`` uses a different schedule than the model."""
    other = state.memory.get("schedule")
    if other is not None and other != schedule:
        raise ValueError(
            f"the model was built for schedule {schedule.key} but the process uses {other.key}; "
            "build both with the same schedule"
        )
