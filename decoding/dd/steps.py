"""The one- or two-step process of a Distilled Decoding student (arXiv 2412.17153, sec. 3.3).

The state of ``B`` images is ``x`` ``(B, n)`` long (the tokens so far) and ``t`` ``(B,)`` long, the
number of leading positions already fixed; ``memory`` holds the starting noise ``(B, n, D)`` and the
class ``(B,)``. The student (:class:`~decoding.dd.student.StudentModel`) sees the codebook vectors of
the fixed positions and the noise of the others, and predicts every token ``(B, n, K)``.

- one step: the grid is ``0 -> n``: every token from pure noise (one network call);
- two steps: ``0 -> k -> n``: the first call's tokens at positions ``< k`` are kept, then the student
  re-enters with those ``k`` tokens and the *same* noise at positions ``>= k`` and fixes the rest
  (DD's ``X_1 -> X_k -> X_n``; the exact map would give the same noise the same tokens).

Each step takes the argmax of the student's logits: it distils a deterministic map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from decoding.core.types import Prediction, State


@dataclass(frozen=True)
class DDProcess:
    """Args: num_tokens: n. reenter: k, the position the second step starts from (``0 < k < n``)."""

    num_tokens: int
    reenter: int

    def __post_init__(self) -> None:
        if not 0 < self.reenter < self.num_tokens:
            raise ValueError(f"reenter must lie in (0, {self.num_tokens}), got {self.reenter}")

    def init(self, prompt: Mapping[str, Any], generator: torch.Generator) -> State:
        """``prompt``: ``{"noise": (B, n, D), "labels": (B,) long}``."""
        noise, labels = prompt["noise"], prompt["labels"]
        if noise.dim() != 3 or noise.shape[1] != self.num_tokens:
            raise ValueError(f"noise must be (B, {self.num_tokens}, D), got {tuple(noise.shape)}")
        if labels.shape != (noise.shape[0],):
            raise ValueError(f"labels must be ({noise.shape[0]},), got {tuple(labels.shape)}")
        b, dev = noise.shape[0], noise.device
        return State(x=torch.zeros(b, self.num_tokens, dtype=torch.long, device=dev),
                     t=torch.zeros(b, dtype=torch.long, device=dev), done=torch.zeros(b, dtype=torch.bool, device=dev),
                     memory={"noise": noise, "labels": labels.to(dev)})

    def schedule(self, steps: int) -> Tensor:
        """``[0, n]`` (one step) or ``[0, k, n]`` (two steps)."""
        if steps == 1:
            return torch.tensor([0, self.num_tokens])
        if steps == 2:
            return torch.tensor([0, self.reenter, self.num_tokens])
        raise ValueError(f"a DD student takes 1 or 2 steps, got {steps}")

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """Fix positions ``[t, t_next)`` to the argmax of ``pred.logits`` ``(B, n, K)`` (later ones hold the guess)."""
        if pred.logits is None or pred.logits.dim() != 3 or pred.logits.shape[1] != self.num_tokens:
            raise ValueError(f"a DD student predicts logits (B, {self.num_tokens}, K)")
        tokens = pred.logits.argmax(-1)
        pos = torch.arange(self.num_tokens, device=tokens.device)[None]
        x = torch.where(pos < state.t[:, None], state.x, tokens)
        t = torch.full_like(state.t, int(t_next))
        return State(x=x, t=t, done=t >= self.num_tokens, step=state.step + 1, memory=state.memory)
