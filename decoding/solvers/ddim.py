"""DDIM (Song, Meng & Ermon, arXiv 2010.02502): the first-order step, deterministic (eta = 0) or not.

``x_t = alpha_t x0 + sqrt(sigma_t^2 - c^2) eps + c z`` with
``c = eta * sqrt(sigma_t^2 / sigma_s^2 * (1 - alpha_s^2 / alpha_t^2))`` and ``z ~ N(0, I)``.
With ``eta = 0`` this is the exponential-Euler step of the probability-flow ODE (first order,
equal to DPM-Solver++(1)); with ``eta = 1`` it is DDPM ancestral sampling. Equal step for step to
diffusers' ``DDIMScheduler`` (``clip_sample=False``, ``set_alpha_to_one=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from decoding.core.types import Prediction
from decoding.solvers.base import StepInfo
from decoding.solvers.parameterization import data_prediction, noise_prediction


def ddim_update(
    x0: Tensor,
    eps: Tensor,
    alpha_s: float,
    sigma_s: float,
    alpha_t: float,
    sigma_t: float,
    eta: float = 0.0,
    noise: Tensor | None = None,
) -> Tensor:
    """One DDIM step from time ``s`` to ``t`` given the prediction ``(x0, eps)`` at ``s``. Shapes of ``x0``."""
    std = 0.0
    if eta > 0 and sigma_t > 0:
        std = eta * math.sqrt((sigma_t**2 / sigma_s**2) * (1.0 - alpha_s**2 / alpha_t**2))
    out = alpha_t * x0 + math.sqrt(max(sigma_t**2 - std**2, 0.0)) * eps
    if std > 0:
        if noise is None:
            raise ValueError("DDIM with eta > 0 needs noise")
        out = out + std * noise
    return out


@dataclass(frozen=True)
class DDIM:
    """DDIM as a :class:`~decoding.solvers.base.Solver` (no history).

    Args:
        eta: 0 for the deterministic ODE step, 1 for DDPM-like ancestral sampling.
    """

    eta: float = 0.0
    #: the time grid measured best for this solver on the trained models (docs/perf/solvers.md, 3.2):
    #: uniform time beats logsnr_trunc at NFE 5-6 on the retrained fashion-large and ties at NFE 8-10
    default_spacing: ClassVar[str] = "time"
    order: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0 or math.isnan(self.eta):
            raise ValueError(f"DDIM eta must lie in [0, 1], got {self.eta}")

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    @property
    def min_steps(self) -> int:
        return 1

    def step(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None
    ) -> tuple[Tensor, Any]:
        a_s, s_s, _ = info.s
        a_t, s_t, _ = info.t
        x0 = data_prediction(pred, x, a_s, s_s)
        eps = noise_prediction(pred, x, a_s, s_s)
        return ddim_update(x0, eps, a_s, s_s, a_t, s_t, self.eta, noise), None
