"""Logits processors: pure ``(logits (..., V), state) -> logits`` maps, never in place.

Combine them with :func:`standard_processors`, which fixes the order (see :mod:`decoding.processors.chain`).
"""

from decoding.processors.chain import standard_processors
from decoding.processors.min_p import MinP
from decoding.processors.repetition import RepetitionPenalty
from decoding.processors.temperature import Temperature
from decoding.processors.top_k import TopK
from decoding.processors.top_p import TopP
from decoding.processors.typical import Typical

__all__ = ["MinP", "RepetitionPenalty", "Temperature", "TopK", "TopP", "Typical", "standard_processors"]
