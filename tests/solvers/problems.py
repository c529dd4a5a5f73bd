"""Closed-form test problems shared by the solver tests."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from decoding.denoisers import GaussianData, GaussianMixtureData
from decoding.solvers.schedules import LinearVPSchedule, VPSchedule


def gaussian(dim: int = 6, seed: int = 0) -> GaussianData:
    """A Gaussian with a full, well-conditioned covariance."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(dim, generator=g, dtype=torch.float64)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    return GaussianData(mean, a @ a.T / dim + 0.05 * torch.eye(dim, dtype=torch.float64))


def mixture(dim: int = 4, seed: int = 1) -> GaussianMixtureData:
    """Two well-separated anisotropic Gaussians."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(2, dim, generator=g, dtype=torch.float64)
    return GaussianMixtureData(torch.tensor([0.3, 0.7]), means, 0.05 + 0.3 * torch.rand(2, dim, generator=g, dtype=torch.float64))


def noise(n: int, dim: int, seed: int = 2) -> Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def lambda_grid(schedule: VPSchedule, t_start: float, t_stop: float, steps: int) -> Tensor:
    """``steps + 1`` times uniform in lambda from ``t_start`` to ``t_stop`` (an intermediate time)."""
    lam = torch.linspace(float(schedule.lambda_(t_start)), float(schedule.lambda_(t_stop)), steps + 1, dtype=torch.float64)
    ts = schedule.t_of_lambda(lam)
    ts[0], ts[-1] = t_start, t_stop
    return ts


def rmse(a: Tensor, b: Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


def slope(ns: list[int], errors: list[float]) -> float:
    """Convergence order: minus the least-squares slope of log(error) against log(NFE)."""
    assert all(math.isfinite(e) and e > 0 for e in errors), errors
    return -float(np.polyfit(np.log(ns), np.log(errors), 1)[0])


SCHEDULE = LinearVPSchedule()
