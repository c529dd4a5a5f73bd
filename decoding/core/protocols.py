"""The four kinds of pieces that plug into the decode loop.

- :class:`Model` (a denoiser in the broad sense): ``state -> Prediction``.
- :class:`Process`: how a state starts, which time grid it walks, and how one step moves it.
- :class:`Processor`: a pure ``(logits, state) -> logits`` map (temperature, top-k, ...).
- :class:`Constraint`: per-row token masks that can advance, roll back and fork (grammars).

Wrappers (guidance, caching, stitching) are models that hold a model.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from decoding.core.types import Prediction, State


@runtime_checkable
class Model(Protocol):
    """Looks at a state and predicts. Must not mutate the state."""

    def __call__(self, state: State) -> Prediction: ...


@runtime_checkable
class Process(Protocol):
    """A decoding process: autoregressive, absorbing diffusion, any-order, continuous, one-step."""

    def init(self, prompt: Any, generator: torch.Generator) -> State:
        """The starting state for ``prompt`` (token ids, a template, a batch size or a shape)."""
        ...

    def schedule(self, steps: int) -> Tensor:
        """The grid of ``steps + 1`` times the loop walks; step ``i`` goes from ``ts[i]`` to ``ts[i+1]``."""
        ...

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """Move ``state`` to time ``t_next`` given the (processed) prediction."""
        ...


@runtime_checkable
class Processor(Protocol):
    """A pure logits map: returns new logits ``(..., V)``; never modifies its input."""

    def __call__(self, logits: Tensor, state: State) -> Tensor: ...


@runtime_checkable
class Constraint(Protocol):
    """A batch of per-row token constraints (e.g. one grammar matcher per row).

    ``mask`` returns the allowed next tokens, ``advance`` feeds the tokens the last step
    emitted (``State.emitted``; ``-1`` for rows that emitted nothing), ``rollback`` undoes the
    last ``n`` tokens of every row, ``fork`` returns an independent copy. A constraint may also
    define ``reweight(logits, state) -> logits``, which the loop applies before the mask
    (:class:`~decoding.aligned.constraint.AlignedConstraint` does).
    """

    def mask(self, state: State) -> Tensor:
        """``(B, V)`` bool: True where the token is allowed next."""
        ...

    def advance(self, tokens: Tensor) -> None: ...

    def is_complete(self) -> Tensor:
        """``(B,)`` bool: the text so far is a complete sentence."""
        ...

    def rollback(self, n: int) -> None: ...

    def fork(self) -> Constraint: ...
