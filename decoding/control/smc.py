"""Sequential Monte Carlo twisted by the reward: the particle baseline of DTS (arXiv 2506.20701).

The target ``p(x) exp(lam r(x))`` is approached by ``K`` particles per output that follow the
sampler and are reweighted at every step with the twist ``exp(lam r(x0_hat(x_t)))`` (the reward
of the model's denoised estimate, the look-ahead of FK steering, arXiv 2501.06848, and of TDS,
arXiv 2306.17775, without its gradient proposal):

    log w += lam * (r(x0_hat(x_t)) - r(x0_hat(x_{t+1}))),   and at the end  lam * (r(x_0) - r(x0_hat(x_1))),

so the weights telescope to ``lam r(x_0)`` (an unbiased estimate of the normalising constant).
Particles are resampled within their group (systematic resampling) when the group's effective
sample size drops below ``ess * K``. :class:`TwistedSMC` is a decode-loop process around the
continuous process (one loop); :func:`smc_sample` runs it and draws one particle per output.
Model cost: ``K * steps`` per output; the reward runs ``steps + 1`` times per particle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from decoding.control.rewards import Reward, call_reward
from decoding.control.rows import take_rows
from decoding.core.loop import decode
from decoding.core.protocols import Model
from decoding.core.types import Prediction, State
from decoding.processes.continuous import ContinuousProcess

KEY = "smc"


def systematic_resample(logw: Tensor, u: Tensor) -> Tensor:
    """Systematic resampling of each row of ``logw`` ``(G, K)`` with one uniform per row ``u`` ``(G,)``: indices ``(G, K)``."""
    g, k = logw.shape
    w = torch.softmax(logw, 1)
    cdf = torch.cumsum(w, 1)
    cdf[:, -1] = 1.0
    pos = (u[:, None] + torch.arange(k, dtype=w.dtype)) / k
    return torch.searchsorted(cdf, pos).clamp_max(k - 1)


@dataclass
class TwistedSMC:
    """The SMC process (module docstring). Rows ``g*K .. g*K + K - 1`` are the particles of output ``g``.

    Args:
        inner: the continuous process (a stochastic, history-free solver: ddpm or DDIM with eta > 0).
        reward: ``r(x0) -> (B,)``. lam: the target's inverse temperature.
        particles: ``K``. ess: resample a group when its ESS falls below ``ess * K`` (1 = always).
    """

    inner: ContinuousProcess
    reward: Reward
    lam: float
    particles: int
    ess: float = 0.5

    def __post_init__(self) -> None:
        if not getattr(self.inner.solver, "stochastic", False):
            raise ValueError("SMC needs a stochastic sampler (solver='ddpm' or DDIM with eta > 0)")
        if not (isinstance(self.particles, int) and self.particles >= 1):
            raise ValueError(f"particles must be a whole number >= 1, got {self.particles!r}")
        if not 0 <= self.ess <= 1:
            raise ValueError(f"ess must lie in [0, 1], got {self.ess}")
        if not (self.lam > 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be > 0 and finite, got {self.lam}")

    def schedule(self, steps: int) -> Tensor:
        return self.inner.schedule(steps)

    def init(self, prompt: Any, generator: torch.Generator) -> State:
        state = self.inner.init(prompt, generator)
        if state.batch_size % self.particles:
            raise ValueError(f"the batch ({state.batch_size} rows) must be whole groups of {self.particles} particles")
        zeros = torch.zeros(state.batch_size, dtype=torch.float64)
        return state.remember(**{KEY: {"logw": zeros, "value": zeros.clone(), "resampled": 0}})

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        info = state.memory[KEY]
        b, k = state.batch_size, self.particles
        value = call_reward(self.reward, _x0(pred, state))
        logw = info["logw"] + self.lam * (value - info["value"])
        groups = logw.view(-1, k)
        w = torch.softmax(groups, 1)
        low = (1.0 / (w * w).sum(1)) < self.ess * k
        resampled = info["resampled"]
        if bool(low.any()):
            u = torch.rand(int(low.sum()), generator=generator, device=generator.device, dtype=torch.float64).cpu()
            idx = torch.arange(b).view(-1, k)
            idx[low] = systematic_resample(groups[low], u) + (low.nonzero() * k)
            idx = idx.flatten()
            state, pred = _take(state, pred, idx)
            value = value[idx]
            logw = torch.where(low.repeat_interleave(k), torch.zeros_like(logw), logw[idx])
            resampled += int(low.sum())
        out = self.inner.step(state, pred, t_next, generator)
        if out.memory.get("solver") is not None:
            raise ValueError("SMC resamples rows: use a solver without history (ddpm or DDIM with eta > 0)")
        if bool(out.done.all()):
            final = call_reward(self.reward, out.x)
            logw = logw + self.lam * (final - value)
            value = final
        return out.remember(**{KEY: {"logw": logw, "value": value, "resampled": resampled}})


def _x0(pred: Prediction, state: State) -> Tensor:
    if pred.x0 is None:
        raise ValueError("SMC twists with the model's x0 estimate; the model returned none")
    return pred.x0


def _take(state: State, pred: Prediction, idx: Tensor) -> tuple[State, Prediction]:
    dev = idx.to(state.x.device)
    state = take_rows(state, idx)
    pred = Prediction(
        x0=None if pred.x0 is None else pred.x0.index_select(0, dev),
        eps=None if pred.eps is None else pred.eps.index_select(0, dev),
    )
    return state, pred


def smc_sample(
    model: Model, process: ContinuousProcess, shape: tuple[int, ...], steps: int, n: int, particles: int,
    reward: Reward, lam: float, generator: torch.Generator, cond: Any = None, ess: float = 0.5,
    batch_size: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` outputs of twisted SMC with ``particles`` particles each.

    Returns:
        ``(x (n, *shape), reward (n,), nfe (n,))``: one particle per output drawn by its final weight.
    """
    smc = TwistedSMC(process, reward, lam, particles, ess)
    per = max(1, (batch_size or n * particles) // particles)
    xs, rs, nfe = [], [], []
    for lo in range(0, n, per):
        g = min(per, n - lo)
        rows = torch.arange(lo, lo + g).repeat_interleave(particles)
        row_cond = cond.index_select(0, rows.to(cond.device)) if isinstance(cond, Tensor) and cond.dim() and cond.shape[0] == n else cond
        res = decode(model, smc, (g * particles, *shape), steps=steps, generator=generator, cond=row_cond)
        info = res.state.memory[KEY]
        u = torch.rand(g, generator=generator, device=generator.device, dtype=torch.float64).cpu()
        pick = _draw_one(info["logw"].view(g, particles), u) + torch.arange(g) * particles
        xs.append(res.x.index_select(0, pick.to(res.x.device)))
        rs.append(info["value"][pick])
        nfe.append(res.nfe.to(torch.float64).view(g, particles).sum(1))
    return torch.cat(xs), torch.cat(rs), torch.cat(nfe)


def _draw_one(logw: Tensor, u: Tensor) -> Tensor:
    """One index per row of ``logw`` ``(G, K)`` drawn by its weights (inverse CDF at ``u`` ``(G,)``)."""
    cdf = torch.cumsum(torch.softmax(logw, 1), 1)
    cdf[:, -1] = 1.0
    return torch.searchsorted(cdf, u[:, None]).squeeze(1).clamp_max(logw.shape[1] - 1)
