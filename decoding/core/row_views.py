"""A view of some rows of a token state, for per-row processors and constraints."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from decoding.core.types import State


def row_view(state: State, rows: Sequence[int] | Tensor) -> State:
    """``state`` restricted to ``rows``: ``x``, ``t``, ``done``, ``emitted`` and the attention mask.

    Other memory entries (KV caches, grids) are left out: per-row processors and constraints read
    tokens and the mask only.
    """
    if isinstance(rows, Tensor):
        idx = rows.to(state.x.device)
    else:
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=state.x.device)
    memory = {}
    mask = state.memory.get("attention_mask")
    if isinstance(mask, Tensor):
        memory["attention_mask"] = mask.index_select(0, idx.to(mask.device))
    return State(
        x=state.x.index_select(0, idx),
        t=state.t.index_select(0, idx.to(state.t.device)),
        done=state.done.index_select(0, idx.to(state.done.device)),
        step=state.step,
        emitted=None if state.emitted is None else state.emitted.index_select(0, idx.to(state.emitted.device)),
        memory=memory,
    )
