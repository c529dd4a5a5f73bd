"""The standard processor chain and its order.

Order (the same as transformers' ``generate()``, so that equal settings give equal distributions):

1. repetition penalty  (edits raw logits: it must see the model's scores, not truncated ones)
2. temperature         (rescales; every truncation below is computed on the tempered distribution)
3. top-k
4. top-p (nucleus)
5. min-p
6. typical (locally typical sampling)

A grammar constraint, when present, is applied after all of them by the decode loop
(:func:`decoding.core.loop.apply_processors`).
"""

from __future__ import annotations

from decoding.core.protocols import Processor
from decoding.processors.min_p import MinP
from decoding.processors.repetition import RepetitionPenalty
from decoding.processors.temperature import Temperature
from decoding.processors.top_k import TopK
from decoding.processors.top_p import TopP
from decoding.processors.typical import Typical


def standard_processors(
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    typical: float | None = None,
    repetition_penalty: float | None = None,
    min_tokens_to_keep: int = 1,
) -> list[Processor]:
    """Processors for the given settings, in the documented order; ``None`` (or a no-op value) skips one.

    No-op values, skipped like transformers does: ``temperature == 1``, ``top_k == 0``,
    ``top_p == 1``, ``repetition_penalty == 1``. ``temperature <= 0`` is an error (use greedy
    decoding instead); ``typical`` must lie in (0, 1).
    """
    procs: list[Processor] = []
    if repetition_penalty is not None and float(repetition_penalty) != 1.0:
        procs.append(RepetitionPenalty(float(repetition_penalty)))
    if temperature is not None and float(temperature) != 1.0:
        procs.append(Temperature(float(temperature)))
    if top_k is not None and top_k != 0:
        procs.append(TopK(int(top_k), min_tokens_to_keep))
    if top_p is not None and float(top_p) != 1.0:
        procs.append(TopP(float(top_p), min_tokens_to_keep))
    if min_p is not None:
        procs.append(MinP(float(min_p), min_tokens_to_keep))
    if typical is not None:
        procs.append(Typical(float(typical), min_tokens_to_keep))
    return procs
