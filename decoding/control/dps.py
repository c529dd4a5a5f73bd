"""Diffusion posterior sampling (DPS, Chung et al., arXiv 2209.14687) as a model wrapper: the baseline of steering.

DPS approximates the likelihood of the observation given the noisy state by the loss at the
denoised estimate, ``log p(y | x_t) ~ -L(x0_hat(x_t))``, and adds its gradient with respect to
``x_t`` -- through the denoiser -- to the score. In Tweedie's form (``E[x0 | x_t, y] = E[x0 | x_t] +
(sigma_t^2 / alpha_t) grad_{x_t} log p(y | x_t)``) the wrapper returns

    x0' = x0_hat - s / (1 + s r_t^2 kappa) * (sigma_t^2 / alpha_t) * grad_{x_t} L(x0_hat(x_t)),   eps' consistent with x_t.

``s = scale``. Since ``grad_{x_t} x0_hat = (alpha_t / sigma_t^2) Cov[x0 | x_t]``, the undamped step
(``kappa = 0``) is DPS's likelihood approximation; the damping ``1 / (1 + s r_t^2 kappa)`` is the
one :mod:`decoding.control.steer` uses (``r_t^2``, ``kappa``: posterior-variance proxy and loss
curvature), so that the two methods differ only in the gradient's path (through the denoiser
here, not there) and a sharp likelihood (small observation noise) does not overshoot. Chung et
al. instead normalise a tuned step ``zeta`` by the residual norm. With a classifier loss
(``kappa = 0``) this is classifier-gradient guidance on the clean estimate (universal guidance's
forward term, arXiv 2302.07121). One network evaluation and one backward pass per step;
``Prediction.nfe`` counts the evaluation.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from decoding.control.operators import Condition
from decoding.control.steer import (
    GradientSteering,
    check_grad_mode,
    coefficient,
    posterior_variance,
    schedule_of,
    steered,
)
from decoding.core.protocols import Model
from decoding.core.types import Prediction, State
from decoding.processes.continuous import state_coefficients
from decoding.solvers.parameterization import data_prediction, noise_prediction


def differentiable_call(model: Model, state: State) -> Prediction:
    """``model(state)`` with autograd on: the model's ``__call__`` without an inference-mode decorator.

    Raises a ValueError when the prediction still carries no gradient (e.g. a wrapper whose inner
    model runs under inference mode).
    """
    call = inspect.unwrap(type(model).__call__)
    pred = call(model, state)
    out = pred.x0 if pred.x0 is not None else pred.eps
    if out is None or not out.requires_grad:
        raise ValueError(
            f"{type(model).__name__} gave a prediction without gradients; DPS differentiates through the "
            "model: wrap the image model itself (not CFG / T-Stitch wrappers) or a closed-form denoiser"
        )
    return pred


@dataclass(frozen=True, init=False)
class DPS(GradientSteering):
    """DPS with ``conditions`` (losses summed), step ``scale`` and the data variance ``data_var`` of the damping."""

    def wrap(self, model: Model) -> Model:
        return DPSModel(model, self.conditions, self.scale, self.data_var)


class DPSModel:
    """The DPS wrapper (module docstring)."""

    def __init__(self, model: Model, conditions: Sequence[Condition], scale: float = 1.0, data_var: float = 1.0) -> None:
        self.model, self.conditions, self.scale, self.data_var = model, tuple(conditions), float(scale), float(data_var)
        self.curvature = float(sum(c.curvature for c in self.conditions))

    def __call__(self, state: State) -> Prediction:
        check_grad_mode("DPS")
        alpha, sigma = state_coefficients(state, schedule_of(state))
        a, s = coefficient(alpha, state.x), coefficient(sigma, state.x)
        with torch.enable_grad():
            x = state.x.detach().clone().requires_grad_(True)
            pred = differentiable_call(self.model, replace(state, x=x))
            x0 = data_prediction(pred, x, a, s)
            total = sum(c.loss(x0).sum() for c in self.conditions)
            g = None
            if isinstance(total, Tensor) and total.requires_grad:
                (g,) = torch.autograd.grad(total, x, allow_unused=True)
        x0 = x0.detach()
        eps = noise_prediction(Prediction(x0=pred.x0, eps=pred.eps), x, a, s).detach()
        plain = Prediction(x0=x0, eps=eps, nfe=pred.nfe, memory=pred.memory, extras=pred.extras)
        if g is None:
            return plain
        step = self.scale / (1 + self.scale * posterior_variance(a, s, self.data_var) * self.curvature)
        return steered(x0, eps, -step * (s * s / a) * g.to(x0.dtype), a, s, plain)
