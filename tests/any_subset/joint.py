"""An exact any-subset model: conditionals of a known joint over short sequences (test helper)."""

from __future__ import annotations

import itertools

import torch
from scipy.stats import chisquare
from torch import Tensor

from decoding.nn.any_subset import AnySubsetModel, AnySubsetQuery


def random_joint(vocab: int, length: int, seed: int, concentration: float = 0.3) -> Tensor:
    """A strongly dependent joint ``(V,) * L`` (float64) drawn from a Dirichlet."""
    g = torch.Generator().manual_seed(seed)
    gam = torch._standard_gamma(torch.full((vocab**length,), concentration, dtype=torch.float64), generator=g)
    p = gam / gam.sum()
    p = 0.97 * p + 0.03 / p.numel()  # every sequence possible
    return p.reshape((vocab,) * length)


class JointModel(AnySubsetModel):
    """Answers each query with ``log p(x_pos | contents of rank < query_rank)`` under ``joint``."""

    def __init__(self, joint: Tensor) -> None:
        self.vocab_size = joint.shape[0]
        self.length = joint.dim()
        self.seqs = torch.tensor(list(itertools.product(range(self.vocab_size), repeat=self.length)))  # (S, L)
        self.p = joint.reshape(-1)
        self.calls = 0

    def any_subset_logits(self, query: AnySubsetQuery) -> Tensor:
        self.calls += 1
        known = query.rank[:, None, :] < query.query_rank[:, :, None]  # (B, Q, L)
        match = self.seqs[None, None] == query.tokens[:, None, None, :]  # (B, 1, S, L)
        ok = (match | ~known[:, :, None, :]).all(-1)  # (B, Q, S)
        w = ok * self.p  # (B, Q, S)
        vals = self.seqs.T[query.query_pos]  # (B, Q, S): value at the queried position
        out = torch.zeros(*w.shape[:2], self.vocab_size, dtype=torch.float64).scatter_add_(2, vals, w)
        out = torch.where(out.sum(-1, keepdim=True) > 0, out, torch.ones_like(out))
        return (out / out.sum(-1, keepdim=True)).log()


def conditional_table(joint: Tensor, fixed: dict[int, int]) -> dict[tuple[int, ...], float]:
    """Exact distribution of the free positions (in position order) given ``fixed`` positions."""
    v, n = joint.shape[0], joint.dim()
    free = [i for i in range(n) if i not in fixed]
    out: dict[tuple[int, ...], float] = {}
    for vals in itertools.product(range(v), repeat=len(free)):
        full = [0] * n
        for i, val in fixed.items():
            full[i] = val
        for i, val in zip(free, vals, strict=True):
            full[i] = val
        out[vals] = float(joint[tuple(full)])
    z = sum(out.values())
    return {k: p / z for k, p in out.items()}


def chi2_pvalue(counts: dict, probs: dict, min_expected: float = 5.0) -> float:
    """Chi-square goodness of fit; cells with expected count < ``min_expected`` are pooled."""
    n = sum(counts.values())
    obs, exp, pool_o, pool_e = [], [], 0.0, 0.0
    for key in sorted(probs):
        e = probs[key] * n
        if e < min_expected:
            pool_o += counts.get(key, 0)
            pool_e += e
        else:
            obs.append(counts.get(key, 0))
            exp.append(e)
    if pool_e > 0:
        obs.append(pool_o)
        exp.append(pool_e)
    extra = n - sum(obs)  # samples outside the support
    if extra:
        return 0.0
    return float(chisquare(obs, exp).pvalue)
