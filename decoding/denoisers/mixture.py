"""Gaussian-mixture data: the posterior mean ``E[x0 | x_t]`` in closed form.

For ``x0 ~ sum_k pi_k N(mu_k, Sigma_k)`` and ``x = alpha x0 + sigma eps``, the component posterior is
``p(k | x) ∝ pi_k N(x; alpha mu_k, C_k)`` with ``C_k = alpha^2 Sigma_k + sigma^2 I``, and
``E[x0 | x] = sum_k p(k | x) (mu_k + alpha Sigma_k C_k^{-1} (x - alpha mu_k))``.
Computed in each component's eigenbasis; samples are flattened to ``(B, D)`` internally.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from decoding.solvers.parameterization import bcast


class GaussianMixtureData:
    """A mixture of ``K`` Gaussians in ``D`` dimensions.

    Args:
        weights: ``(K,)`` positive (normalised here).
        means: ``(K, D)``.
        covs: ``(K, D, D)`` symmetric positive definite, or ``(K, D)`` variances.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64).flatten()
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if means.dim() != 2 or means.shape[0] != w.numel():
            raise ValueError(f"means must be (K, D) with K = {w.numel()}, got {tuple(means.shape)}")
        k, d = means.shape
        if covs.shape == (k, d):
            covs = torch.diag_embed(covs)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must be ({k}, {d}, {d}) or ({k}, {d}), got {tuple(covs.shape)}")
        if bool((w <= 0).any()):
            raise ValueError("mixture weights must be positive")
        evals, evecs = torch.linalg.eigh(covs)
        if bool((evals <= 0).any()):
            raise ValueError("every covariance must be positive definite")
        self.log_w = torch.log(w / w.sum())
        self.means, self.covs, self.evals, self.evecs = means, covs, evals, evecs

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def denoise(self, x: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor:
        """``E[x0 | x_t = x]`` for ``x`` ``(B, ...)``; ``alpha``, ``sigma`` scalars or ``(B,)``."""
        xf = x.reshape(x.shape[0], -1)
        if xf.shape[1] != self.dim:
            raise ValueError(f"samples have {xf.shape[1]} values, the mixture has {self.dim} dimensions")
        mu, u, e = (v.to(xf) for v in (self.means, self.evecs, self.evals))  # (K,D), (K,D,D), (K,D)
        a = bcast(alpha, xf)[..., None]  # (B,1,1) or scalar
        s = bcast(sigma, xf)[..., None]
        diff = xf[:, None, :] - a * mu[None]  # (B, K, D)
        y = torch.einsum("bkd,kde->bke", diff, u)  # eigen-coordinates
        var = a * a * e[None] + s * s  # (B, K, D)
        logp = self.log_w.to(xf)[None] - 0.5 * (torch.log(var).sum(-1) + (y * y / var).sum(-1))
        logp = logp - 0.5 * self.dim * math.log(2 * math.pi)
        post = torch.softmax(logp, dim=1)  # (B, K)
        cond = mu[None] + torch.einsum("bke,kde->bkd", y * (a * e[None] / var), u)
        return torch.einsum("bk,bkd->bd", post, cond).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws ``(n, D)`` float64."""
        comp = torch.multinomial(self.log_w.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        scaled = z * self.evals[comp].sqrt()
        return self.means[comp] + torch.einsum("nd,ned->ne", scaled, self.evecs[comp])
