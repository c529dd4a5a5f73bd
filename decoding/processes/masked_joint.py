"""A model with a known answer for masked processes: the exact clean-data conditionals of a joint.

Given a joint distribution ``P`` over all ``V^L`` sequences, :class:`JointConditionals` returns for
every position ``i`` of a partly masked sequence ``x`` the exact ``P(x^i = j | x^UM)`` (RADD's
``p0``, arXiv:2406.03736, Thm. 1). A sampler fed these conditionals must reproduce ``P``: the
any-order sampler exactly, the diffusion samplers in the limit of many steps. Used by the tests
and examples; it enumerates all ``V^L`` sequences, so keep ``V^L`` small (a few thousand).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from decoding.core.types import Prediction, State


def all_sequences(vocab_size: int, length: int) -> Tensor:
    """``(V^L, L)`` long: every sequence, in the row-major order of a ``(V,) * L`` table."""
    return torch.tensor(list(itertools.product(range(vocab_size), repeat=length)), dtype=torch.long)


def random_joint(vocab_size: int, length: int, generator: torch.Generator, zeros: float = 0.2) -> Tensor:
    """A random joint ``(V,) * L`` table (float64, sums to 1) with about ``zeros`` of its cells set to 0."""
    p = torch.rand((vocab_size,) * length, generator=generator, dtype=torch.float64) ** 2
    p = p * (torch.rand(p.shape, generator=generator, dtype=torch.float64) >= zeros)
    return p / p.sum()


class JointConditionals:
    """``state -> Prediction(logits (B, L, V))``: log ``P(x^i = j | unmasked positions of x)``.

    Args:
        joint: ``(V,) * L`` probabilities (any non-negative table; normalized here).
        mask_id: the mask id (default ``V``).

    Contexts of probability 0 (cannot happen when sampling from these conditionals) get uniform
    conditionals. ``calls`` counts evaluations and ``rows`` the rows evaluated.
    """

    time_independent = True

    def __init__(self, joint: Tensor, mask_id: int | None = None) -> None:
        self.vocab_size = int(joint.shape[0])
        self.length = joint.dim()
        if any(s != self.vocab_size for s in joint.shape):
            raise ValueError(f"joint must have shape (V,) * L, got {tuple(joint.shape)}")
        self.joint = (joint / joint.sum()).to(torch.float64)
        self.mask_id = self.vocab_size if mask_id is None else int(mask_id)
        self.seqs = all_sequences(self.vocab_size, self.length)  # (N, L)
        self.onehot = torch.nn.functional.one_hot(self.seqs, self.vocab_size).to(torch.float64)  # (N, L, V)
        self.calls = 0
        self.rows = 0

    def conditionals(self, x: Tensor) -> Tensor:
        """``(B, L, V)`` float64 conditionals for tokens ``x`` ``(B, L)``."""
        seqs, p = self.seqs.to(x.device), self.joint.reshape(-1).to(x.device)
        ok = ((seqs[None] == x[:, None]) | (x[:, None] == self.mask_id)).all(-1)  # (B, N)
        w = ok * p[None]
        cond = torch.einsum("bn,nlv->blv", w, self.onehot.to(x.device))
        total = cond.sum(-1, keepdim=True)
        return torch.where(total > 0, cond / total.clamp_min(1e-300), torch.full_like(cond, 1.0 / self.vocab_size))

    def __call__(self, state: State) -> Prediction:
        self.calls += 1
        self.rows += state.batch_size
        return Prediction(logits=self.conditionals(state.x).log().float())

    def probability(self, x: Tensor) -> Tensor:
        """``(B,)`` joint probability of complete sequences ``x`` ``(B, L)``."""
        idx = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        for i in range(self.length):
            idx = idx * self.vocab_size + x[:, i]
        return self.joint.reshape(-1).to(x.device)[idx]

    def entropy(self) -> float:
        """Entropy of the joint in nats."""
        p = self.joint[self.joint > 0]
        return float(-(p * p.log()).sum())


def sequence_index(x: Tensor, vocab_size: int) -> Tensor:
    """``(B,)`` row-major index of complete sequences ``x`` ``(B, L)`` in a ``(V,) * L`` table."""
    idx = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for i in range(x.shape[1]):
        idx = idx * vocab_size + x[:, i]
    return idx


def histogram(x: Tensor, vocab_size: int) -> Tensor:
    """``(V^L,)`` counts of complete sequences ``x`` ``(B, L)``."""
    return torch.bincount(sequence_index(x, vocab_size), minlength=int(math.pow(vocab_size, x.shape[1])))
