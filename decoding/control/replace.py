"""Plain replacement as a model wrapper: paste the observation into the prediction at every step (a baseline).

Inpainting: the known pixels of ``x0_hat`` become the observed ones and their noise estimate a
fresh Gaussian draw, so a DDIM / DDPM step puts ``alpha_s y + sigma_s z`` there: the known pixels
of every ``x_s`` are the forward-noised observation (the replacement method of Song et al.,
arXiv 2011.13456, sec. 5 and app. I). Super-resolution: ``x0_hat`` is projected onto ``A x0 = y``
(``x0 + A^+ (y - A x0)``, the range-space step of DDNM, arXiv 2212.00490; the noise estimate is
kept). Conditions without a cheap projection (deblurring, classifiers) are refused. The wrapper
draws its noise from its own generator, seeded with ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from decoding.control.operators import Inpaint, condition_tuple
from decoding.control.steer import coefficient, schedule_of
from decoding.core.protocols import Model
from decoding.core.types import Prediction, State
from decoding.processes.continuous import state_coefficients
from decoding.solvers.parameterization import data_prediction, noise_prediction


@dataclass(frozen=True)
class Replace:
    """Replacement with ``conditions`` (each must offer ``project``)."""

    conditions: tuple[Any, ...]
    seed: int = 0

    def __init__(self, *conditions: Any, seed: int = 0) -> None:
        conditions = condition_tuple(conditions, "Replace")
        for c in conditions:
            if not callable(getattr(c, "project", None)):
                raise ValueError(
                    f"{type(c).__name__} has no projection onto its observations: replacement applies to "
                    "inpainting and super-resolution only"
                )
        object.__setattr__(self, "conditions", tuple(conditions))
        object.__setattr__(self, "seed", int(seed))

    def spec(self) -> str:
        return f"replace:{'+'.join(c.spec() for c in self.conditions)}"

    def wrap(self, model: Model) -> Model:
        return ReplaceModel(model, self.conditions, self.seed)


class ReplaceModel:
    """The replacement wrapper (module docstring)."""

    def __init__(self, model: Model, conditions: Sequence[Any], seed: int = 0) -> None:
        self.model, self.conditions, self.seed = model, tuple(conditions), int(seed)
        self._generator: torch.Generator | None = None

    def _noise(self, like: torch.Tensor) -> torch.Tensor:
        if self._generator is None or self._generator.device != like.device:
            self._generator = torch.Generator(device=like.device).manual_seed(self.seed)
        return torch.randn(like.shape, generator=self._generator, device=like.device, dtype=like.dtype)

    def __call__(self, state: State) -> Prediction:
        pred = self.model(state)
        alpha, sigma = state_coefficients(state, schedule_of(state))
        a, s = coefficient(alpha, state.x), coefficient(sigma, state.x)
        x0 = data_prediction(pred, state.x, a, s)
        eps = noise_prediction(pred, state.x, a, s)
        for c in self.conditions:
            x0 = c.project(x0)
            if isinstance(c, Inpaint):
                m = c.mask.to(eps.device, eps.dtype)
                eps = m * self._noise(eps) + (1 - m) * eps
        return Prediction(x0=x0, eps=eps, nfe=pred.nfe, memory=pred.memory, extras=pred.extras)
