"""Diffusion posterior sampling (DPS, Chung et al., arXiv 2209.14687) as a model wrapper: the gradient baseline of steering.

DPS evaluates the observation's residual on the denoised estimate and differentiates it with
respect to the noisy state THROUGH the denoiser. Its update (Algorithm 1 of the paper, DDPM
sampler) moves the next state by a fixed step ``zeta`` along that gradient:

    x_s = DDPM(x_t, x0_hat) - zeta * grad_{x_t} ||y - A x0_hat(x_t)||

(the residual norm, not its square; a classifier condition contributes its loss
``-log p(label | x0_hat)`` instead, which makes this classifier-gradient guidance on the clean
estimate, universal guidance's forward term, arXiv 2302.07121). As a wrapper the shift is
expressed in the prediction: ``x0' = x0_hat + delta`` with the consistent ``eps'``, and ``delta =
-zeta g / c`` where ``c = (alpha_s^2 - alpha_t^2) / (alpha_s sigma_t^2)`` is how much a DDPM step
from ``t`` to the next grid time ``s`` moves ``x_s`` per unit of ``x0`` at fixed ``x_t``: with the
``ddpm`` solver this is the paper's update exactly (other solvers get the same ``x0`` correction).
One network evaluation and one backward pass per step; ``Prediction.nfe`` counts the evaluation.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from decoding.control.operators import Condition, condition_tuple
from decoding.control.steer import check_grad_mode, coefficient, schedule_of, steered
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


def ddpm_gain(state: State, alpha_t: Any, sigma_t: Any) -> Any:
    """``c = (alpha_s^2 - alpha_t^2) / (alpha_s sigma_t^2)`` for the next grid time ``s`` (see the module docstring)."""
    grid = state.memory.get("grid")
    if grid is None or state.step + 1 >= grid.numel():
        raise ValueError("DPS needs the time grid in state.memory['grid'] (run it through decode())")
    alpha_s = float(schedule_of(state).alpha(grid[state.step + 1]))
    return (alpha_s**2 - alpha_t * alpha_t) / (alpha_s * sigma_t * sigma_t)


@dataclass(frozen=True, init=False)
class DPS:
    """DPS with ``conditions`` (residual norms and classifier losses summed) and the step ``zeta = scale``."""

    conditions: tuple[Any, ...]
    scale: float = 1.0

    def __init__(self, *conditions: Any, scale: float = 1.0) -> None:
        object.__setattr__(self, "conditions", condition_tuple(conditions, "DPS"))
        if not 0 <= scale < float("inf"):
            raise ValueError(f"DPS scale (zeta) must be a finite number >= 0 (default 1), got {scale}")
        object.__setattr__(self, "scale", float(scale))

    def spec(self) -> str:
        return f"dps:{'+'.join(c.spec() for c in self.conditions)},zeta={self.scale:g}"

    def wrap(self, model: Model) -> Model:
        return DPSModel(model, self.conditions, self.scale)


class DPSModel:
    """The DPS wrapper (module docstring)."""

    def __init__(self, model: Model, conditions: Sequence[Condition], scale: float = 1.0) -> None:
        self.model, self.conditions, self.scale = model, tuple(conditions), float(scale)

    def __call__(self, state: State) -> Prediction:
        check_grad_mode("DPS")
        alpha, sigma = state_coefficients(state, schedule_of(state))
        a, s = coefficient(alpha, state.x), coefficient(sigma, state.x)
        with torch.enable_grad():
            x = state.x.detach().clone().requires_grad_(True)
            pred = differentiable_call(self.model, replace(state, x=x))
            x0 = data_prediction(pred, x, a, s)
            total = sum(c.distance(x0).sum() for c in self.conditions)
            g = None
            if isinstance(total, Tensor) and total.requires_grad:
                (g,) = torch.autograd.grad(total, x, allow_unused=True)
        x0 = x0.detach()
        eps = noise_prediction(Prediction(x0=pred.x0, eps=pred.eps), x, a, s).detach()
        plain = Prediction(x0=x0, eps=eps, nfe=pred.nfe, memory=pred.memory, extras=pred.extras)
        if g is None:
            return plain
        return steered(x0, eps, -self.scale * g.to(x0.dtype) / ddpm_gain(state, a, s), a, s, plain)
