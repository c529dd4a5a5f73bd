"""The stochastic N-step sampler of guided distillation (Meng et al., arXiv 2210.03142, sec. 3.3).

On a grid ``t_0 > t_1 > ... > t_N`` (``t_N``: clean data) the deterministic sampler is DDIM from
``t_i`` to ``t_{i+1}``. The stochastic one, from ``t_i`` while ``i + 2 <= N``:

1. one deterministic DDIM step of twice the length, to ``k = t_{i+2}``:
   ``z_k = alpha_k x + sigma_k (z - alpha_i x) / sigma_i`` (``x`` the model's data prediction);
2. one step of the forward process back to ``h = t_{i+1}``:
   ``z_h = (alpha_h / alpha_k) z_k + sigma_{h|k} n``, ``n ~ N(0, I)``, with
   ``sigma_{h|k}^2 = sigma_h^2 - (alpha_h / alpha_k)^2 sigma_k^2`` (the exact transition ``q(z_h | z_k)``);

and the last step (``i = N - 1``) is deterministic DDIM to the data. It makes N model calls, like
the deterministic sampler; N = 1 is the deterministic sampler.

It is a :class:`~decoding.solvers.base.Solver`: the continuous process hands it the whole grid
and the Gaussian ``noise`` for every step that does not end at the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from decoding.core.types import Prediction
from decoding.solvers.base import StepInfo
from decoding.solvers.ddim import ddim_update
from decoding.solvers.parameterization import data_prediction, noise_prediction


@dataclass(frozen=True)
class StochasticStepSampler:
    """Meng et al.'s stochastic N-step sampler as a solver (one model call per step, no history)."""

    order: int = field(default=1, init=False)
    stochastic: bool = field(default=True, init=False)

    @property
    def min_steps(self) -> int:
        return 1

    def step(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None
    ) -> tuple[Tensor, Any]:
        """``x`` ``(B, ...)`` at ``t_i`` -> ``(x at t_{i+1}, None)``; ``noise`` like ``x`` unless ``t_{i+1}`` is data."""
        a_s, s_s, _ = info.s
        x0, eps = data_prediction(pred, x, a_s, s_s), noise_prediction(pred, x, a_s, s_s)
        i = info.i
        if i + 2 > info.n_steps:  # the last step: DDIM to the end of the grid
            a_t, s_t, _ = info.t
            return ddim_update(x0, eps, a_s, s_s, a_t, s_t), None
        if noise is None:
            raise ValueError("the stochastic N-step sampler needs noise for every step but the last")
        a_k, s_k = float(info.alphas[i + 2]), float(info.sigmas[i + 2])
        a_h, s_h = float(info.alphas[i + 1]), float(info.sigmas[i + 1])
        z_k = ddim_update(x0, eps, a_s, s_s, a_k, s_k)
        ratio = a_h / a_k
        std = math.sqrt(max(s_h**2 - (ratio * s_k) ** 2, 0.0))
        return ratio * z_k + std * noise, None
