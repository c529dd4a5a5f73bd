"""A known joint over short code sequences as an AR model: the exact check of the noise -> tokens map (arXiv 2412.17153).

:class:`JointAR` holds a table ``P`` ``(K,) * n`` and answers the autoregressive process with the
exact conditionals ``log p(q_i | q_<i)`` of the prefix in ``state.x[:, 1:]`` (column 0 is a dummy
class token). Driving :class:`~decoding.dd.process.FlowTokens` with it, the tokens of Gaussian noise
must follow ``P``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from decoding.core.types import Prediction, State


def random_joint(codes: int, length: int, generator: torch.Generator) -> Tensor:
    """A Dirichlet(2) draw over the ``codes ** length`` sequences, shaped ``(codes,) * length`` (float64).

    Each cell's Gamma(2, 1) weight is a sum of two Exp(1) draws ``-log U`` of ``generator``.
    """
    u = torch.rand(2, codes**length, generator=generator, dtype=torch.float64)
    gamma = -u.log().sum(0)
    return (gamma / gamma.sum()).reshape((codes,) * length)


class JointAR:
    """Exact next-code log-probabilities of a joint table ``(K,) * n`` given the prefix ``state.x[:, 1:]``."""

    def __init__(self, joint: Tensor) -> None:
        if joint.dim() < 1 or (joint < 0).any() or abs(float(joint.sum()) - 1.0) > 1e-9:
            raise ValueError("joint must be a probability table of shape (K,) * n")
        self.joint = joint.double()
        self.codes, self.length = joint.shape[0], joint.dim()

    def __call__(self, state: State) -> Prediction:
        prefix = state.x[:, 1:]
        i = prefix.shape[1]
        if i >= self.length:
            raise ValueError(f"the joint covers {self.length} positions; the prefix already has {i}")
        marg = self.joint.sum(dim=tuple(range(i + 1, self.length))) if i + 1 < self.length else self.joint  # (K,) * (i + 1)
        rows = marg[tuple(prefix.t())] if i else marg[None].expand(prefix.shape[0], -1)  # (B, K)
        return Prediction(logits=(rows / rows.sum(-1, keepdim=True)).log().float())


def histogram(tokens: Tensor, codes: int) -> Tensor:
    """Counts of each sequence ``(B, n)`` over the ``codes ** n`` cells (row-major, as ``joint.reshape(-1)``)."""
    n = tokens.shape[1]
    weights = codes ** torch.arange(n - 1, -1, -1, device=tokens.device)
    return torch.bincount((tokens * weights).sum(-1), minlength=codes**n)
