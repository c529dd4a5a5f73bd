"""Sub-batches of a continuous state for the control processes and wrappers (rows of DTS passes, SMC resampling)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from decoding.core.row_views import row_view
from decoding.core.types import State


def take_rows(state: State, rows: Tensor, drop: Iterable[str] = ()) -> State:
    """``state`` restricted to (or gathered by) ``rows`` ``(k,)``: ``x``, ``t``, ``done`` and per-row labels.

    ``memory["cond"]`` is sliced when it holds one label per row; the other memory entries (the
    grid, the schedule, solver history of None) are shared as they are, except the keys in ``drop``.
    """
    b = state.batch_size
    memory = {k: v for k, v in state.memory.items() if k not in set(drop)}
    cond = memory.get("cond")
    if isinstance(cond, Tensor) and cond.dim() and cond.shape[0] == b:
        memory["cond"] = cond.index_select(0, rows.to(cond.device))
    view = row_view(state, rows)
    return State(x=view.x, t=view.t, done=view.done, step=state.step, emitted=view.emitted, memory=memory)
