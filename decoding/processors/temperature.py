"""Temperature scaling: ``logits / T``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from decoding.core.types import State

MIN_TEMPERATURE = 1e-6  # logits of a few thousand / 1e-6 stay far inside float32's (and bfloat16's) range


@dataclass(frozen=True)
class Temperature:
    """Divide logits by ``temperature`` (> 0). ``T < 1`` sharpens, ``T > 1`` flattens.

    Matches transformers' ``TemperatureLogitsWarper``. Use the process's ``greedy`` flag for T -> 0.
    """

    stateless: ClassVar[bool] = True  # reads only the logits: graph-safe (decoding.processors.graphed)

    temperature: float

    def __post_init__(self) -> None:
        if not (self.temperature > 0):
            raise ValueError(
                f"temperature must be > 0, got {self.temperature}; use greedy decoding for temperature 0"
            )
        if not MIN_TEMPERATURE <= self.temperature < math.inf:
            raise ValueError(
                f"temperature must be a finite number >= {MIN_TEMPERATURE:g} (below it logits / T overflow to inf and "
                f"the probabilities become NaN), got {self.temperature}; use greedy decoding for T -> 0"
            )

    def __call__(self, logits: Tensor, state: State | None = None) -> Tensor:
        """``logits`` ``(..., V)`` -> ``(..., V)`` (a new tensor)."""
        return logits / self.temperature
