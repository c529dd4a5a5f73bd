"""Autoregressive (left-to-right) decoding: one token per step, ancestral sampling.

The state holds the prompt and every generated token in ``x`` ``(B, P + n)``; ``memory`` holds
the ``attention_mask`` ``(B, P + n)`` (prompts are left-padded) and whatever KV cache the model
returned in ``Prediction.memory`` (the KV-cache slot). Finished rows (EOS) append ``pad_token_id``
and emit ``-1``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from decoding.core.sampling import sample_categorical
from decoding.core.types import Prediction, State


@dataclass(frozen=True)
class Autoregressive:
    """Left-to-right decoding.

    Args:
        eos_token_id: token id(s) that finish a row (None: rows run for all steps).
        pad_token_id: appended to finished rows.
        greedy: take the argmax instead of sampling (temperature -> 0); a ``(B,)`` bool tensor
            chooses per row (a batch mixing greedy and sampled requests).
        stop: optional ``stop(new_state) -> (B,) bool``, called after every step: rows where it
            is True finish there (e.g. a stop string appeared in the decoded text).
    """

    eos_token_id: int | Sequence[int] | None = None
    pad_token_id: int = 0
    greedy: bool | Tensor = False
    stop: Callable[[State], Tensor] | None = None

    def init(self, prompt: Tensor | Mapping[str, Any], generator: torch.Generator) -> State:
        """``prompt``: ``(B, P)`` long ids, or a mapping with ``input_ids`` and (left-padded) ``attention_mask``."""
        if isinstance(prompt, Mapping):
            ids = prompt["input_ids"]
            mask = prompt.get("attention_mask")
        else:
            ids, mask = prompt, None
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
            shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"prompt ids must be a (batch, length) long tensor, got {shape}")
        if ids.shape[1] == 0:
            raise ValueError("prompt must hold at least one token (e.g. BOS)")
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(ids.device, torch.bool)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {tuple(mask.shape)} != input_ids shape {tuple(ids.shape)}")
        b = ids.shape[0]
        return State(
            x=ids,
            t=torch.zeros(b, dtype=torch.long, device=ids.device),
            done=torch.zeros(b, dtype=torch.bool, device=ids.device),
            memory={"attention_mask": mask, "prompt_length": ids.shape[1]},
        )

    def schedule(self, steps: int) -> Tensor:
        """``0, 1, ..., steps``: the number of tokens decoded after each step."""
        return torch.arange(steps + 1)

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """Append one token per row, sampled from ``pred.logits`` ``(B, V)``."""
        if pred.logits is None or pred.logits.dim() != 2:
            raise ValueError("the autoregressive process needs next-token logits of shape (B, V)")
        logits = pred.logits
        if isinstance(self.greedy, Tensor):
            greedy = self.greedy.to(logits.device, torch.bool)
            token = torch.where(greedy, logits.argmax(-1), sample_categorical(logits, generator))
        else:
            token = logits.argmax(-1) if self.greedy else sample_categorical(logits, generator)
        live = ~state.done
        emitted = token.masked_fill(state.done, -1)
        token = token.masked_fill(state.done, self.pad_token_id)
        done = state.done if self.eos_token_id is None else state.done | self._is_eos(token)
        mask = torch.cat([state.memory["attention_mask"], live[:, None]], dim=1)
        new = State(
            x=torch.cat([state.x, token[:, None]], dim=1),
            t=state.t + live,
            done=done,
            step=state.step + 1,
            emitted=emitted,
            memory={**state.memory, **pred.memory, "attention_mask": mask},
        )
        if self.stop is not None:
            new = replace(new, done=done | (self.stop(new).to(done.device, torch.bool) & ~state.done))
        return new

    def _is_eos(self, token: Tensor) -> Tensor:
        """``(B,)`` bool; compares with each EOS id as a Python number (no host-to-device copy)."""
        if self.eos_token_id is None:
            return torch.zeros_like(token, dtype=torch.bool)
        ids = [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)
        hit = token == int(ids[0])
        for e in ids[1:]:
            hit = hit | (token == int(e))
        return hit


def generated_tokens(state: State) -> list[list[int]]:
    """The generated ids of each row, without the prompt and without padding after EOS (EOS kept).

    ``memory["prompt_length"]`` is the column where generation starts: one int, or a ``(B,)``
    tensor for batches whose rows were merged (:func:`decoding.core.rows.merge_rows`).
    """
    start = state.memory["prompt_length"]
    starts = start.tolist() if isinstance(start, Tensor) else [int(start)] * state.batch_size
    mask = state.memory["attention_mask"]
    return [row[s:][m[s:]].tolist() for row, m, s in zip(state.x, mask, starts, strict=True)]
