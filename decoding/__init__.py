"""decoding: one loop for autoregressive, discrete-diffusion and continuous-diffusion decoding."""

from decoding.core import (
    Constraint,
    Model,
    Prediction,
    Process,
    Processor,
    Result,
    State,
    apply_processors,
    decode,
    new_generator,
)

__version__ = "0.1.0"

__all__ = [
    "Constraint",
    "Model",
    "Prediction",
    "Process",
    "Processor",
    "Result",
    "State",
    "__version__",
    "apply_processors",
    "decode",
    "new_generator",
]
