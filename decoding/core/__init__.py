"""Core types, protocols and the decode loop."""

from decoding.core.loop import NonFiniteLogitsError, apply_processors, decode
from decoding.core.protocols import Constraint, Model, Process, Processor
from decoding.core.types import Prediction, Result, State, new_generator

__all__ = [
    "Constraint",
    "Model",
    "NonFiniteLogitsError",
    "Prediction",
    "Process",
    "Processor",
    "Result",
    "State",
    "apply_processors",
    "decode",
    "new_generator",
]
