"""The values that flow through the decode loop: :class:`State`, :class:`Prediction`, :class:`Result`.

All three are frozen dataclasses. A step never mutates a state; it returns a new one
(``dataclasses.replace``), so a state can be kept, compared or forked for free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class State:
    """Where a batch of samples stands.

    Attributes:
        x: tokens ``(B, L)`` (long) or continuous latents ``(B, C, H, W)`` / ``(B, D)``.
        t: ``(B,)`` time, noise level or number of decoded tokens, as the process defines it.
        done: ``(B,)`` bool; finished rows are left unchanged by every later step.
        step: index of the next step (0 before the first model call).
        emitted: ``(B,)`` long, the token each row appended in the last step (``-1`` where
            none: finished rows, non-autoregressive processes). Constraints advance on it.
        memory: whatever a process, model or wrapper carries between steps (KV cache,
            solver history, cached predictions). Never mutated in place.
    """

    x: Tensor
    t: Tensor
    done: Tensor
    step: int = 0
    emitted: Tensor | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.x.shape[0])

    def remember(self, **items: Any) -> State:
        """Return a copy whose ``memory`` also holds ``items`` (the original is unchanged)."""
        from dataclasses import replace

        return replace(self, memory={**self.memory, **items})


@dataclass(frozen=True)
class Prediction:
    """What a model says about a state.

    Attributes:
        logits: discrete predictions: ``(B, V)`` for the next token, or ``(B, L, V)`` for every
            position of a masked/any-order sequence.
        x0: continuous: the denoised estimate, same shape as ``State.x``.
        eps: continuous: the noise estimate (CFG++ renoises with the unconditional one).
        nfe: ``(B,)`` model evaluations spent on each row for this prediction. ``None`` means
            one per unfinished row. Wrappers that skip rows (caching) or call the network more
            than once (guidance) say so here; the loop adds it up (the one place NFE is counted).
        memory: entries for ``State.memory`` that the process should carry (e.g. a new KV cache).
        extras: anything else a process or wrapper needs (e.g. unconditional eps).
    """

    logits: Tensor | None = None
    x0: Tensor | None = None
    eps: Tensor | None = None
    nfe: Tensor | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """The output of :func:`decoding.decode`.

    Attributes:
        x: final tokens or latents (``State.x`` of the last state).
        state: the last state.
        nfe: ``(B,)`` model evaluations per row (float: guidance may count halves).
        steps: number of loop iterations run.
        seconds: wall time of the loop, the device's work included (the loop waits for it at the end).
    """

    x: Tensor
    state: State
    nfe: Tensor
    steps: int
    seconds: float

    @property
    def total_nfe(self) -> float:
        """Largest per-row NFE: the number of batched network calls a batch needed."""
        return float(self.nfe.max().item()) if self.nfe.numel() else 0.0


def new_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (random seed when ``None``)."""
    g = torch.Generator(device=torch.device(device))
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g
