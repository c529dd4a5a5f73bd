"""Per-row processor chains as one processor: a batch whose rows asked for different sampling settings.

Row ``r`` gets exactly ``chains[r]`` applied to its logits (the same scalar processors, the same
code, so its logits are bit-identical to decoding it alone). Rows with equal chains are processed
together: the cost is one gather/scatter and one chain per distinct setting in the batch, and one
chain with no copies when every row asks for the same thing.

Per-row parameter tensors ``(B,)`` would run one chain for all rows, but would not be bit-identical
to the scalar processors (on the CPU ``logits / 0.7`` multiplies by the float reciprocal while
``logits / tensor`` divides), which are bit-identical to transformers'.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from decoding.core.protocols import Processor
from decoding.core.row_views import row_view
from decoding.core.types import State


class RowProcessors:
    """``(logits (B, V), state) -> logits``: row ``r`` through ``chains[r]`` (an empty chain leaves it alone).

    Args:
        chains: one sequence of processors per row (e.g. :meth:`decoding.Sampling.processors`);
            processors must be comparable (the frozen dataclasses of :mod:`decoding.processors` are).
    """

    def __init__(self, chains: Sequence[Sequence[Processor]]) -> None:
        self.chains = [tuple(c) for c in chains]
        groups: dict[tuple, list[int]] = {}
        for r, chain in enumerate(self.chains):
            if chain:
                groups.setdefault(chain, []).append(r)
        self.groups = list(groups.items())

    def __bool__(self) -> bool:
        return bool(self.groups)

    def __call__(self, logits: Tensor, state: State) -> Tensor:
        if logits.shape[0] != len(self.chains):
            raise ValueError(f"{len(self.chains)} row chains for logits of {logits.shape[0]} rows")
        if len(self.groups) == 1 and len(self.groups[0][1]) == len(self.chains):
            out = logits
            for proc in self.groups[0][0]:
                out = proc(out, state)
            return out
        out = logits.clone()
        for chain, rows in self.groups:
            idx = torch.tensor(rows, dtype=torch.long, device=logits.device)
            sub, view = logits.index_select(0, idx), row_view(state, idx)
            for proc in chain:
                sub = proc(sub, view)
            out.index_copy_(0, idx, sub.to(out.dtype))
        return out
