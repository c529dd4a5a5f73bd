"""decoding: one loop for autoregressive, discrete-diffusion and continuous-diffusion decoding."""

from decoding.api import Generation, OptionError, Sampling, generate, load, zoo_names
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
from decoding.wrappers.agd import AGD
from decoding.wrappers.guidance import CFG, CFGPP, PAG, Stitch

__version__ = "0.1.0"

__all__ = [
    "AGD",
    "CFG",
    "CFGPP",
    "PAG",
    "Stitch",
    "Constraint",
    "Generation",
    "OptionError",
    "Sampling",
    "Model",
    "Prediction",
    "Process",
    "Processor",
    "Result",
    "State",
    "__version__",
    "apply_processors",
    "decode",
    "generate",
    "load",
    "new_generator",
    "zoo_names",
]
