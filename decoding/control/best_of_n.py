"""Best-of-N: draw ``N`` samples per output and keep the one with the highest reward (the search baseline of DTS).

Best-of-N maximises the reward as ``N`` grows: it tends to the reward's argmax over the sampler's
support, not to the tilted target ``p(x) exp(lam r(x))`` (the DTS paper's point, arXiv 2506.20701).
Every sample is one pass of :func:`decoding.decode`; the cost is ``N * steps`` model evaluations
per output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from decoding.control.rewards import Reward, call_reward
from decoding.core.loop import decode
from decoding.core.protocols import Model, Process


def best_of_n(
    model: Model, process: Process, shape: tuple[int, ...], steps: int, n: int, candidates: int, reward: Reward,
    generator: torch.Generator, cond: Any = None, batch_size: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` outputs, each the best of ``candidates`` samples.

    Args:
        shape: one sample's shape. cond: None, one value, or ``(n,)`` (one per output).
        batch_size: rows per decode call (default: all ``n * candidates``).

    Returns:
        ``(x (n, *shape), reward (n,), nfe (n,))``.
    """
    if not (isinstance(candidates, int) and candidates >= 1):
        raise ValueError(f"candidates (N of best-of-N) must be a whole number >= 1, got {candidates!r}")
    total = n * candidates
    owner = torch.arange(n).repeat_interleave(candidates)
    bs = batch_size or total
    xs, rs, nfe = [], [], torch.zeros(n, dtype=torch.float64)
    for lo in range(0, total, bs):
        rows = owner[lo : lo + bs]
        row_cond = cond.index_select(0, rows.to(cond.device)) if isinstance(cond, Tensor) and cond.dim() and cond.shape[0] == n else cond
        res = decode(model, process, (rows.numel(), *shape), steps=steps, generator=generator, cond=row_cond)
        xs.append(res.x)
        rs.append(call_reward(reward, res.x))
        nfe.index_add_(0, rows, res.nfe.to(torch.float64))
    x, r = torch.cat(xs), torch.cat(rs)
    best = r.view(n, candidates).argmax(1) + torch.arange(n) * candidates
    return x.index_select(0, best.to(x.device)), r[best], nfe
