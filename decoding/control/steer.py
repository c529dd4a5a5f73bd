"""Steered Diffusion (Nair et al., arXiv 2310.00224) as a model wrapper: steer the x0 estimate by a task loss.

At every step the wrapped model's estimate ``x0_hat`` is moved down the gradient of the summed
condition losses (:mod:`decoding.control.operators`) evaluated on ``x0_hat`` itself, with no
backpropagation through the denoiser (the inverse model only sees clean-image estimates; DPS, the
baseline in :mod:`decoding.control.dps`, differentiates through the network):

    x0' = x0_hat - s * r_t^2 / (1 + s * r_t^2 * kappa) * grad L(x0_hat),
    eps' = eps_hat - (alpha_t / sigma_t) (x0' - x0_hat)          (so x_t = alpha_t x0' + sigma_t eps'),

where ``r_t^2 = v sigma_t^2 / (alpha_t^2 v + sigma_t^2)`` is the posterior variance of ``x0`` given
``x_t`` for data of per-pixel variance ``v`` (``data_var``), ``kappa`` the summed curvature of the
losses and ``s`` the user's ``scale`` (the paper tunes a step size per task; here ``s = 1`` is a
proximal step of the loss under that posterior variance). For a Gaussian prior ``N(mu, v I)`` and
a linear Gaussian observation with ``A A^T`` a multiple of ``I`` (masks, box downsampling), ``x0'``
is exactly ``E[x0 | x_t, y]``, so any first-order sampler then samples the posterior's mean
exactly (tested). The prediction is replaced consistently (``x0'`` and ``eps'``), so every solver
can use it. With a zero loss the output is the wrapped model's, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from decoding.control.operators import Condition, condition_tuple
from decoding.core.protocols import Model
from decoding.core.types import Prediction, State
from decoding.processes.continuous import state_coefficients
from decoding.solvers.parameterization import bcast, data_prediction, noise_prediction


def coefficient(v: Tensor | float, like: Tensor) -> Tensor | float:
    """A schedule coefficient (a float, or ``(B,)`` per row) broadcastable against ``like`` ``(B, ...)``."""
    return v if isinstance(v, float) else bcast(v, like)


def schedule_of(state: State) -> Any:
    sched = state.memory.get("schedule")
    if sched is None:
        raise ValueError("steering needs the noise schedule in state.memory['schedule'] (run it under the continuous process)")
    return sched


def check_grad_mode(what: str) -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{what} needs gradients: do not run it under torch.inference_mode()")


def loss_gradient(conditions: Sequence[Condition], x0: Tensor) -> Tensor | None:
    """``grad_x0 sum_i L_i(x0)`` ``(B, ...)``; None when no loss depends on ``x0``."""
    check_grad_mode("steering")
    with torch.enable_grad():
        x = x0.detach().clone().requires_grad_(True)
        total = sum(c.loss(x).sum() for c in conditions)
        if not isinstance(total, Tensor) or not total.requires_grad:
            return None
        (g,) = torch.autograd.grad(total, x, allow_unused=True)
    return g


def posterior_variance(alpha: Any, sigma: Any, data_var: float) -> Any:
    """``r_t^2 = v sigma^2 / (alpha^2 v + sigma^2)``: ``Var[x0 | x_t]`` per pixel for independent data of variance ``v``."""
    return data_var * sigma * sigma / (alpha * alpha * data_var + sigma * sigma)


def steered(x0: Tensor, eps: Tensor, delta: Tensor, alpha: Any, sigma: Any, like: Prediction) -> Prediction:
    """The prediction with ``x0 + delta`` and the ``eps`` that keeps ``x_t = alpha x0 + sigma eps``."""
    return Prediction(x0=x0 + delta, eps=eps - (alpha / sigma) * delta, nfe=like.nfe, memory=like.memory,
                      extras=like.extras)


@dataclass(frozen=True, init=False)
class Steer:
    """Steered Diffusion with ``conditions`` (their losses are summed; module docstring).

    Args:
        conditions: :mod:`decoding.control.operators` conditions (inpainting, super-resolution,
            deblurring, classifier), one or several (or one list of them).
        scale: ``s`` of the step (1 = the proximal step; larger steers harder).
        data_var: ``v``, the per-pixel variance assumed for the data in the step size.
    """

    conditions: tuple[Any, ...]
    scale: float = 1.0
    data_var: float = 1.0

    def __init__(self, *conditions: Any, scale: float = 1.0, data_var: float = 1.0) -> None:
        object.__setattr__(self, "conditions", condition_tuple(conditions, "Steer"))
        if not 0 <= scale < float("inf"):
            raise ValueError(f"Steer scale must be a finite number >= 0 (default 1), got {scale}")
        if not data_var > 0:
            raise ValueError(f"Steer data_var must be > 0, got {data_var}")
        object.__setattr__(self, "scale", float(scale))
        object.__setattr__(self, "data_var", float(data_var))

    def spec(self) -> str:
        return f"steer:{'+'.join(c.spec() for c in self.conditions)},scale={self.scale:g}"

    def wrap(self, model: Model) -> Model:
        return SteeredModel(model, self.conditions, self.scale, self.data_var)


class SteeredModel:
    """The Steered Diffusion wrapper (module docstring); ``Prediction.nfe`` is the wrapped model's."""

    def __init__(self, model: Model, conditions: Sequence[Condition], scale: float = 1.0, data_var: float = 1.0) -> None:
        self.model, self.conditions = model, tuple(conditions)
        self.scale, self.data_var = float(scale), float(data_var)
        self.curvature = float(sum(c.curvature for c in self.conditions))

    def __call__(self, state: State) -> Prediction:
        pred = self.model(state)
        alpha, sigma = state_coefficients(state, schedule_of(state))
        x0 = data_prediction(pred, state.x, coefficient(alpha, state.x), coefficient(sigma, state.x))
        eps = noise_prediction(pred, state.x, coefficient(alpha, state.x), coefficient(sigma, state.x))
        g = loss_gradient(self.conditions, x0)
        if g is None:
            return pred
        a, s = coefficient(alpha, x0), coefficient(sigma, x0)
        r2 = posterior_variance(a, s, self.data_var)
        step = self.scale * r2 / (1 + self.scale * r2 * self.curvature)
        return steered(x0, eps, -step * g.to(x0.dtype), a, s, pred)
