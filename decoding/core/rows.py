"""Rows joining and leaving a batch between :func:`decoding.decode` calls (continuous batching).

A server decodes a batch a few steps at a time (``decode(model, process, state, steps=k)``
resumes ``state``). Between calls, :func:`merge_rows` builds the next batch: the rows of the
running state that are still wanted, followed by freshly prefilled rows. Autoregressive states
are left-padded, so rows are right-aligned: row ``r`` of a part keeps its columns, moved right
(or left, when columns that every kept row pads are dropped) to the common width. The model's
memory (its KV cache) moves with them through the model's ``merge_rows`` (see
:class:`RowMemory`), and the result is what decoding the rows alone would hold, up to left padding,
which the attention mask hides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from decoding.core.types import State

#: Memory entries of the autoregressive process that merge_rows handles itself.
PROCESS_KEYS = frozenset({"attention_mask", "prompt_length", "grid"})


@runtime_checkable
class RowMemory(Protocol):
    """A model whose memory (KV cache) can be re-batched.

    ``merge_rows(parts, kv_len, room)``: ``parts`` is a list of ``(memory, index)``: a state's
    memory and the ``(n,)`` long rows to take from it (in order; repeats copy a row). Each part's
    cache covers ``memory["kv_len"]`` columns; it is right-aligned into ``kv_len`` columns (left
    padding added, or leading padding columns dropped). ``room``: columns the rows will still
    grow by (a static cache reserves them). Returns the model's entries of the merged memory.

    ``release_rows(memory)`` (optional): the caller will not use ``memory`` again; its buffers
    may be reused by a later merge.
    """

    def merge_rows(self, parts: Sequence[tuple[Mapping[str, Any], Tensor]], kv_len: int, room: int) -> dict[str, Any]: ...


def shift_columns(t: Tensor, index: Tensor, shift: int, dim: int) -> Tensor:
    """Rows ``index`` of ``t`` with dimension ``dim`` moved right by ``shift`` (zeros enter on the left).

    A negative ``shift`` drops the first ``-shift`` columns. ``(B, ...)`` -> ``(n, ...)``.
    """
    rows = t.index_select(0, index.to(t.device))
    if shift < 0:
        return rows.narrow(dim, -shift, rows.shape[dim] + shift)
    if shift == 0:
        return rows
    pad_shape = list(rows.shape)
    pad_shape[dim] = shift
    return torch.cat([rows.new_zeros(pad_shape), rows], dim=dim)


def merge_rows(
    model: Any,
    parts: Sequence[tuple[State, Sequence[int] | Tensor]],
    *,
    pad_token_id: int = 0,
    room: int = 0,
) -> State:
    """One autoregressive state from rows of several, ready to resume with :func:`decoding.decode`.

    Args:
        model: the model the states were decoded with; it must implement :class:`RowMemory`.
        parts: ``(state, rows)`` pairs; each state has taken at least one step (its cache covers
            every column but the last ones it has not fed yet, the same number in every part).
            Empty ``rows`` are skipped.
        pad_token_id: the id written into new left padding (hidden by the attention mask).
        room: columns the merged rows will still grow by (see :class:`RowMemory`).

    Returns:
        A state with the rows in order. ``memory["prompt_length"]`` becomes a ``(B,)`` tensor (the
        column where each row's generated tokens start), ``step`` the largest of the parts.

    Raises:
        TypeError: the model cannot re-batch its memory.
        ValueError: no rows, states of different devices, or memory entries nobody can merge.
    """
    if not isinstance(model, RowMemory):
        raise TypeError(f"{type(model).__name__} cannot re-batch its KV cache (it has no merge_rows method)")
    pieces = []
    for state, rows in parts:
        idx = torch.as_tensor(rows, dtype=torch.long).reshape(-1).to(state.x.device)
        if idx.numel():
            pieces.append((state, idx))
    if not pieces:
        raise ValueError("merge_rows needs at least one row")
    device = pieces[0][0].x.device
    tails, widths, leads = set(), [], []
    for state, idx in pieces:
        if state.x.device != device:
            raise ValueError(f"states on different devices: {device} and {state.x.device}")
        if "attention_mask" not in state.memory or "kv_len" not in state.memory:
            raise ValueError("merge_rows needs autoregressive states after at least one decode step")
        width, kv = state.x.shape[1], int(state.memory["kv_len"])
        tails.add(width - kv)
        used = state.memory["attention_mask"][idx, :kv].any(0)
        lead = int(used.int().argmax()) if bool(used.any()) else kv  # columns every kept row pads
        widths.append(width - lead)
        leads.append(lead)
    if len(tails) != 1:
        raise ValueError(f"states whose caches lag by different numbers of columns {sorted(tails)} cannot be merged")
    tail = tails.pop()
    width = max(widths)
    x_parts, mask_parts, start_parts = [], [], []
    for (state, idx), lead, w in zip(pieces, leads, widths, strict=True):
        shift = width - w - lead  # new column = old column + shift
        x = shift_columns(state.x, idx, shift, 1)
        mask = shift_columns(state.memory["attention_mask"].to(torch.bool), idx, shift, 1)
        if shift > 0:
            x[:, :shift] = pad_token_id
        x_parts.append(x)
        mask_parts.append(mask)
        start = torch.as_tensor(state.memory.get("prompt_length", 0), dtype=torch.long, device=device)
        start = start.expand(state.batch_size) if start.dim() == 0 else start
        start_parts.append(start.index_select(0, idx) + shift)
    kv_len = width - tail
    model_memory = model.merge_rows([(s.memory, i) for s, i in pieces], kv_len, room)
    for state, _ in pieces:
        unknown = set(state.memory) - PROCESS_KEYS - set(model_memory)
        if unknown:
            raise ValueError(f"merge_rows cannot merge the memory entries {sorted(unknown)} (not a KV cache it knows)")

    def cat(name: str) -> Tensor:
        return torch.cat([getattr(s, name).index_select(0, i) for s, i in pieces])

    emitted = None
    if all(s.emitted is not None for s, _ in pieces):
        emitted = cat("emitted")
    return State(
        x=torch.cat(x_parts),
        t=cat("t"),
        done=cat("done"),
        step=max(s.step for s, _ in pieces),
        emitted=emitted,
        memory={**model_memory, "attention_mask": torch.cat(mask_parts), "prompt_length": torch.cat(start_parts)},
    )


def release_rows(model: Any, state: State) -> None:
    """Tell ``model`` that ``state`` will not be decoded again (its cache buffers may be reused)."""
    release = getattr(model, "release_rows", None)
    if release is not None:
        release(state.memory)
