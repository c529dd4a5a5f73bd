"""Gaussian data ``x0 ~ N(mu, Sigma)``: closed-form denoiser and probability-flow ODE map.

With ``x = alpha x0 + sigma eps`` the marginal is ``N(alpha mu, C)``, ``C = alpha^2 Sigma + sigma^2 I``,
and ``E[x0 | x] = mu + alpha Sigma C^{-1} (x - alpha mu)``. In the eigenbasis of ``Sigma``
(eigenvalues ``e``) the probability-flow ODE (Song et al., arXiv 2011.13456) keeps the standardised
coordinate ``(x - alpha mu) / sqrt(alpha^2 e + sigma^2)`` constant, so the exact ODE map between any
two times is linear: :meth:`GaussianData.ode_map`. Samples are flattened to ``(B, D)`` internally.
"""

from __future__ import annotations

import torch
from torch import Tensor

from decoding.solvers.parameterization import bcast


def _coef(v: Tensor | float, x: Tensor) -> Tensor:
    """``v`` as a ``(B, 1)`` or scalar tensor for rows of ``x`` ``(B, D)``."""
    return bcast(v, x)


class GaussianData:
    """``N(mean, cov)`` in ``D`` dimensions (``cov`` full ``(D, D)`` or diagonal ``(D,)``).

    Args:
        mean: ``(D,)``.
        cov: ``(D, D)`` symmetric positive definite, or ``(D,)`` variances.
    """

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
        cov = torch.as_tensor(cov, dtype=torch.float64)
        d = mean.numel()
        if cov.dim() == 1:
            cov = torch.diag(cov)
        if cov.shape != (d, d):
            raise ValueError(f"cov must be ({d}, {d}) or ({d},), got {tuple(cov.shape)}")
        if not torch.allclose(cov, cov.T, atol=1e-12):
            raise ValueError("cov must be symmetric")
        evals, evecs = torch.linalg.eigh(cov)
        if bool((evals <= 0).any()):
            raise ValueError("cov must be positive definite")
        self.mean, self.cov, self.evals, self.evecs = mean, cov, evals, evecs

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def _flat(self, x: Tensor) -> Tensor:
        if x[0].numel() != self.dim:
            raise ValueError(f"samples have {x[0].numel()} values, the Gaussian has {self.dim} dimensions")
        return x.reshape(x.shape[0], -1)

    def denoise(self, x: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor:
        """``E[x0 | x_t = x]`` for ``x`` ``(B, ...)`` at noise level ``(alpha, sigma)`` (scalars or ``(B,)``)."""
        xf = self._flat(x)
        mu, u, e = (v.to(xf) for v in (self.mean, self.evecs, self.evals))
        a, s = _coef(alpha, xf), _coef(sigma, xf)
        y = (xf - a * mu) @ u
        y = y * (a * e / (a * a * e + s * s))
        return (mu + y @ u.T).reshape(x.shape)

    def ode_map(self, x: Tensor, alpha_s: float, sigma_s: float, alpha_t: float, sigma_t: float) -> Tensor:
        """The exact probability-flow ODE solution at ``(alpha_t, sigma_t)`` from ``x`` at ``(alpha_s, sigma_s)``."""
        xf = self._flat(x)
        mu, u, e = (v.to(xf) for v in (self.mean, self.evecs, self.evals))
        y = (xf - alpha_s * mu) @ u
        y = y * torch.sqrt((alpha_t**2 * e + sigma_t**2) / (alpha_s**2 * e + sigma_s**2))
        return (alpha_t * mu + y @ u.T).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws ``(n, D)`` float64."""
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + (z * self.evals.sqrt()) @ self.evecs.T
