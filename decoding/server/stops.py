"""When a sample of the continuous batch ends besides EOS: its token budget or a stop string."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from decoding.core.types import State


class RowStop:
    """``stop(state) -> (B,) bool`` for :class:`~decoding.processes.autoregressive.Autoregressive`.

    Row ``r`` ends when it has generated ``max_tokens`` tokens (``state.t``) or when the text of
    its last tokens contains one of its stop strings (only rows with stop strings are decoded:
    a few tokens each, enough to hold the longest stop string).

    Args:
        tokenizer: decodes token ids.
        rows: the batch's rows (each with ``job.max_tokens`` and ``job.stops``).
        device: where ``state.t`` lives.
    """

    def __init__(self, tokenizer: Any, rows: Sequence[Any], device: torch.device) -> None:
        self.tokenizer = tokenizer
        self.budget = torch.tensor([r.job.max_tokens for r in rows], dtype=torch.long, device=device)
        self.stops = [(i, r.job.stops, 4 * max(len(s) for s in r.job.stops) + 8) for i, r in enumerate(rows)
                      if r.job.stops]

    def __call__(self, state: State) -> Tensor:
        out = state.t >= self.budget
        if not self.stops:
            return out
        t, done = state.t.tolist(), state.done.tolist()
        hits = []
        for i, stops, window in self.stops:
            k = min(t[i], window)
            if done[i] or k <= 0:
                continue
            text = self.tokenizer.decode(state.x[i, -k:].tolist(), skip_special_tokens=True)
            if any(s in text for s in stops):
                hits.append(i)
        if hits:
            out = out.clone()
            out[hits] = True
        return out
