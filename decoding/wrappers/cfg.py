"""Classifier-free guidance as a model wrapper (Ho & Salimans, arXiv 2207.12598).

``CFGModel(model, scale, null_label)`` is a model: for a state with class labels
``state.memory["cond"]`` it calls ``model`` once on ``2B`` rows (the conditional rows, then the same
rows with the null label) and returns ``pred_null + scale * (pred_cond - pred_null)`` for both the
noise and the data prediction (the two are affine in the network output for a given ``x_t``, so
combining either gives the same step). ``scale = 1`` is the conditional model itself. Each row costs
two model evaluations (``Prediction.nfe``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from decoding.core.protocols import Model
from decoding.core.types import Prediction, State


class CFGModel:
    """Classifier-free guidance around a class-conditional continuous model.

    Args:
        model: ``state -> Prediction(x0, eps)`` that reads labels from ``state.memory["cond"]``
            (an int, a ``(B,)`` long tensor, or None for the null class).
        scale: guidance scale ``w >= 0`` (1 = conditional, 0 = unconditional).
        null_label: the label of the unconditional branch (the model's null class).
    """

    def __init__(self, model: Model, scale: float, null_label: int) -> None:
        if not scale >= 0:
            raise ValueError(f"CFG scale must be >= 0, got {scale}")
        self.model = model
        self.scale = float(scale)
        self.null_label = int(null_label)
        self._pairs: tuple[Any, Tensor] | None = None  # (cond object, (2B,) labels): built once per run

    def _labels(self, cond: Any, b: int, device: torch.device) -> Tensor:
        if self._pairs is not None and self._pairs[0] is cond and self._pairs[1].shape[0] == 2 * b:
            return self._pairs[1]
        y = torch.full((b,), self.null_label, dtype=torch.long) if cond is None else torch.as_tensor(cond).long()
        y = y.reshape(-1).to(device)
        if y.numel() == 1:
            y = y.expand(b)
        if y.shape != (b,):
            raise ValueError(f"need one class label per row ({b}), got {y.numel()}")
        pair = torch.cat([y, torch.full_like(y, self.null_label)])
        self._pairs = (cond, pair)
        return pair

    def __call__(self, state: State) -> Prediction:
        b = state.batch_size
        labels = self._labels(state.memory.get("cond"), b, state.x.device)
        both = replace(
            state,
            x=torch.cat([state.x, state.x]),
            t=torch.cat([state.t, state.t]),
            done=torch.cat([state.done, state.done]),
            memory={**state.memory, "cond": labels},
        )
        pred = self.model(both)
        if pred.x0 is None or pred.eps is None:
            raise ValueError("CFG needs a model that predicts both x0 and eps")
        x0_c, x0_u = pred.x0.chunk(2)
        eps_c, eps_u = pred.eps.chunk(2)
        w = self.scale
        nfe = torch.full((2 * b,), 1.0, device=state.done.device) if pred.nfe is None else pred.nfe
        return Prediction(
            x0=x0_u + w * (x0_c - x0_u),
            eps=eps_u + w * (eps_c - eps_u),
            nfe=nfe[:b] + nfe[b:],
            extras={"eps_uncond": eps_u, "x0_uncond": x0_u},
        )


@dataclass(frozen=True)
class CFG:
    """The ``guidance=[CFG(scale)]`` option of :func:`decoding.generate`: wraps the model in :class:`CFGModel`."""

    scale: float

    def __post_init__(self) -> None:
        if not self.scale >= 0:
            raise ValueError(f"CFG scale must be >= 0, got {self.scale}")

    def wrap(self, model: Model, null_label: int) -> Model:
        return CFGModel(model, self.scale, null_label)

    def spec(self) -> str:
        return f"cfg:{self.scale:g}"
