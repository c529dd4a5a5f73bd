"""Toy models with known next-token distributions for the ASAp tests (arXiv 2405.21047)."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from decoding.aligned import FiniteLanguage
from decoding.core.types import Prediction, State

BIN_EOS = 2


def binary_language() -> FiniteLanguage:
    """The paper's binary grammar over tokens {0, 1, EOS=2}: "00000" or any length-5 string starting with 1."""
    seqs = [(0, 0, 0, 0, 0)] + [(1, *t) for t in itertools.product((0, 1), repeat=4)]
    return FiniteLanguage(seqs, vocab_size=3, eos_token_id=BIN_EOS)


class UniformModel:
    """Every next token equally likely: logits zero ``(B, V)``."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def __call__(self, state: State) -> Prediction:
        return Prediction(logits=torch.zeros(state.batch_size, self.vocab_size))

    def logprobs(self, prefix: tuple[int, ...]) -> Tensor:
        return torch.full((self.vocab_size,), -torch.log(torch.tensor(float(self.vocab_size))).item())


class PrefixModel:
    """Random next-token logits that depend on the whole generated prefix (deterministic per prefix).

    ``logits(prefix) = scale * N(0, 1)`` drawn from a generator seeded by ``(seed, prefix)``.
    The prompt is everything before ``prompt_length``.
    """

    def __init__(self, vocab_size: int, prompt_length: int = 1, seed: int = 0, scale: float = 2.0) -> None:
        self.vocab_size = vocab_size
        self.prompt_length = prompt_length
        self.seed = seed
        self.scale = scale
        self._cache: dict[tuple[int, ...], Tensor] = {}

    def logits(self, prefix: tuple[int, ...]) -> Tensor:
        if prefix not in self._cache:
            h = self.seed
            for t in prefix:
                h = (h * 1_000_003 + t + 1) % (2**61 - 1)
            g = torch.Generator().manual_seed(h)
            self._cache[prefix] = (self.scale * torch.randn(self.vocab_size, generator=g)).float()
        return self._cache[prefix]

    def logprobs(self, prefix: tuple[int, ...]) -> Tensor:
        return torch.log_softmax(self.logits(prefix).double(), 0)

    def __call__(self, state: State) -> Prediction:
        rows = state.x[:, self.prompt_length :].tolist()
        return Prediction(logits=torch.stack([self.logits(tuple(r)) for r in rows]))
