"""A Markov-chain language model with a known distribution over sequences (test helper)."""

from __future__ import annotations

import itertools

import torch

from decoding.core.types import Prediction, State


class MarkovModel:
    """Next-token logits ``log P[x_last]`` for a transition matrix ``P`` ``(V, V)``."""

    def __init__(self, transition: torch.Tensor) -> None:
        self.logp = transition.log()

    def __call__(self, state: State) -> Prediction:
        return Prediction(logits=self.logp[state.x[:, -1]])


def sequence_probs(transition: torch.Tensor, start: int, length: int) -> dict[tuple[int, ...], float]:
    """Exact probability of every continuation of ``length`` tokens after ``start``."""
    v = transition.shape[0]
    out = {}
    for seq in itertools.product(range(v), repeat=length):
        p, prev = 1.0, start
        for s in seq:
            p *= float(transition[prev, s])
            prev = s
        out[seq] = p
    return out
