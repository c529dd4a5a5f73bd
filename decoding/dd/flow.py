"""The per-token flow of Distilled Decoding (arXiv 2412.17153, sec. 3.1): Gaussian noise -> one codebook entry.

The next-token distribution ``p`` over ``K`` codebook vectors ``c_k`` (``D``-dim) is a mixture of
point masses. Along the straight paths ``x_t = t x_1 + (1 - t) eps`` (``eps ~ N(0, I)``, ``x_1 ~ p``)
the flow-matching velocity has a closed form,

    v(x, t) = (m(x, t) - x) / (1 - t),   m(x, t) = sum_k w_k(x, t) c_k,
    w(x, t) = softmax_k( log p_k - |x - t c_k|^2 / (2 (1 - t)^2) ),

a softmax-weighted pull towards the codebook (``m`` is the posterior mean of ``x_1``). The ODE
``dx/dt = v`` carries ``N(0, I)`` at ``t = 0`` to ``p`` at ``t = 1``; each trajectory lands on one
code, so ``eps -> code`` is a deterministic map that sends Gaussian noise to ``p`` exactly (up to the
ODE solver's error, which only moves the boundaries between the codes' regions).

The solver is DPM-Solver++(2M) (arXiv 2211.01095) in the data-prediction form for ``alpha_t = t``,
``sigma_t = 1 - t``: the posterior mean is the "x0" prediction, ``lambda = log(t / (1 - t))`` is the
half log-SNR, the grid is uniform in ``lambda`` from ``lambda_min`` to ``lambda_max``, and the first
step starts at ``t = 0`` exactly (where ``m`` is the prior mean). At ``lambda_max`` the posterior is
one-hot for any code separation above ``~exp(-lambda_max)``; the token is its argmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _check(x: Tensor, logp: Tensor, codes: Tensor) -> None:
    if x.dim() != 2 or logp.dim() != 2 or codes.dim() != 2:
        raise ValueError(f"x must be (B, D), logp (B, K), codes (K, D); got {tuple(x.shape)}, {tuple(logp.shape)}, {tuple(codes.shape)}")
    if x.shape[0] != logp.shape[0] or logp.shape[1] != codes.shape[0] or x.shape[1] != codes.shape[1]:
        raise ValueError(f"shapes do not match: x {tuple(x.shape)}, logp {tuple(logp.shape)}, codes {tuple(codes.shape)} "
                         "(x (B, D), logp (B, K), codes (K, D))")


def posterior_logits(x: Tensor, t: float, logp: Tensor, codes: Tensor) -> Tensor:
    """``(B, K)`` unnormalised log posterior of the code ``x_1`` given ``x_t = x``: ``log p_k - |x - t c_k|^2 / (2 (1 - t)^2)``.

    Args:
        x: ``(B, D)`` the state at time ``t``. t: in [0, 1). logp: ``(B, K)`` log-probabilities
        (or logits: any per-row constant cancels). codes: ``(K, D)`` codebook vectors.
    """
    sigma = 1.0 - t
    d2 = (x[:, None, :] - t * codes[None, :, :]).pow(2).sum(-1)  # (B, K)
    return logp - d2 / (2.0 * sigma * sigma)


def posterior_mean(x: Tensor, t: float, logp: Tensor, codes: Tensor) -> Tensor:
    """``(B, D)``: ``m(x, t) = sum_k softmax(posterior_logits)_k c_k``."""
    return torch.softmax(posterior_logits(x, t, logp, codes), dim=-1) @ codes


def velocity(x: Tensor, t: float, logp: Tensor, codes: Tensor) -> Tensor:
    """``(B, D)``: the closed-form flow-matching velocity ``(m(x, t) - x) / (1 - t)`` (``t < 1``)."""
    _check(x, logp, codes)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"t must lie in [0, 1), got {t}")
    return (posterior_mean(x, t, logp, codes) - x) / (1.0 - t)


@dataclass(frozen=True)
class TokenFlow:
    """The ODE solve ``eps -> code`` (deterministic).

    Args:
        steps: solver steps (network-free: each costs one ``(B, K, D)`` distance computation).
        lambda_min, lambda_max: the ``lambda = log(t / (1 - t))`` range of the grid after the first
            step from ``t = 0``.
    """

    steps: int = 64
    lambda_min: float = -3.0
    lambda_max: float = 7.0

    def __post_init__(self) -> None:
        if self.steps < 2:
            raise ValueError(f"TokenFlow needs steps >= 2, got {self.steps}")
        if not self.lambda_min < self.lambda_max:
            raise ValueError(f"lambda_min ({self.lambda_min}) must be below lambda_max ({self.lambda_max})")

    def times(self) -> list[float]:
        """``0, t_1, ..., t_steps``: ``t = sigmoid(lambda)`` on a uniform ``lambda`` grid (host floats)."""
        lams = [self.lambda_min + (self.lambda_max - self.lambda_min) * i / (self.steps - 1) for i in range(self.steps)]
        return [0.0] + [1.0 / (1.0 + math.exp(-lam)) for lam in lams]

    def solve(self, noise: Tensor, logp: Tensor, codes: Tensor) -> Tensor:
        """``(B, D)`` the state at ``t_steps`` reached from ``noise`` ``(B, D)`` (float64 inside)."""
        _check(noise, logp, codes)
        ts = self.times()
        x = noise.double()
        lp, c = logp.double(), codes.double()
        m_prev: Tensor | None = None
        h_prev = 0.0
        for i in range(1, len(ts)):
            s, t = ts[i - 1], ts[i]
            m = posterior_mean(x, s, lp, c)
            if s == 0.0:  # from t = 0: x_t = t m + (1 - t) eps with eps = x (exact for constant m)
                x = t * m + (1.0 - t) * x
                continue
            h = math.log(t / (1 - t)) - math.log(s / (1 - s))
            d = m if m_prev is None else m + (m - m_prev) * (h / (2.0 * h_prev))
            # data-prediction exponential integrator: x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) D
            x = ((1 - t) / (1 - s)) * x + t * (-math.expm1(-h)) * d
            m_prev, h_prev = m, h
        return x.to(noise.dtype)

    def tokens(self, noise: Tensor, logp: Tensor, codes: Tensor) -> Tensor:
        """``(B,)`` long: the code each noise vector ``(B, D)`` flows to under ``logp`` ``(B, K)``.

        Codes with probability 0 (``logp = -inf``) are never chosen.
        """
        x = self.solve(noise, logp, codes)
        t = self.times()[-1]
        return posterior_logits(x.double(), t, logp.double(), codes.double()).argmax(-1)
