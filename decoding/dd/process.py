"""The noise -> tokens map of Distilled Decoding (arXiv 2412.17153, sec. 3.2) as a process of the decode loop.

:class:`FlowTokens` is autoregressive decoding whose token choice is the per-token flow
(:class:`~decoding.dd.flow.TokenFlow`): at position ``i`` the teacher's (processed, guided) next-token
distribution ``p(. | q_<i)`` and the noise vector ``eps_i`` give the token the ODE carries ``eps_i``
to, and that token is fed back. The whole map ``(eps_1..eps_n) -> (q_1..q_n)`` is deterministic, and
for Gaussian noise its tokens are distributed as the teacher's samples (each position is exact given
its prefix, and ``eps_i`` is independent of the prefix, which depends on ``eps_<i`` only).

The step hands the chosen token to :class:`~decoding.processes.autoregressive.Autoregressive` as a
point mass, so the state layout (``x``, ``attention_mask``, ``emitted``, KV cache) is the
autoregressive one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.dd.flow import TokenFlow
from decoding.processes.autoregressive import Autoregressive


@dataclass(frozen=True)
class FlowTokens:
    """Autoregressive decoding with the token of each step chosen by the per-token flow of its noise.

    Args:
        codes: ``(K, D)`` codebook vectors (the teacher's logits are over these ``K`` codes).
        flow: the ODE solve.
    """

    codes: Tensor
    flow: TokenFlow = field(default_factory=TokenFlow)

    def init(self, prompt: Mapping[str, Any], generator: torch.Generator) -> State:
        """``prompt``: ``{"input_ids": (B, P) long, "noise": (B, n, D)}``; step ``i`` uses ``noise[:, i]``."""
        if not isinstance(prompt, Mapping) or "noise" not in prompt or "input_ids" not in prompt:
            raise ValueError("FlowTokens takes {'input_ids': (B, P) long, 'noise': (B, n, D)}")
        noise = prompt["noise"]
        ids = prompt["input_ids"]
        if noise.dim() != 3 or noise.shape[0] != ids.shape[0] or noise.shape[2] != self.codes.shape[1]:
            raise ValueError(f"noise must be (B, n, D) = ({ids.shape[0]}, n, {self.codes.shape[1]}), got {tuple(noise.shape)}")
        state = Autoregressive().init(ids, generator)
        return state.remember(noise=noise)

    def schedule(self, steps: int) -> Tensor:
        return torch.arange(steps + 1)

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """Append the token the flow carries ``noise[:, step]`` to under ``softmax(pred.logits)`` ``(B, K)``."""
        if pred.logits is None or pred.logits.dim() != 2 or pred.logits.shape[1] != self.codes.shape[0]:
            raise ValueError(f"FlowTokens needs next-token logits (B, {self.codes.shape[0]}) over the codebook")
        noise = state.memory["noise"]
        if state.step >= noise.shape[1]:
            raise ValueError(f"step {state.step} has no noise vector: the noise covers {noise.shape[1]} tokens")
        codes = self.codes.to(pred.logits.device)
        token = self.flow.tokens(noise[:, state.step].to(codes.device), pred.logits.log_softmax(-1), codes)
        point = torch.full_like(pred.logits, float("-inf")).scatter(1, token[:, None], 0.0)
        return Autoregressive(greedy=True).step(state, replace(pred, logits=point), t_next, generator)
