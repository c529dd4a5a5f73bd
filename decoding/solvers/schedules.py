"""Variance-preserving (VP) noise schedules: ``x_t = alpha_t x_0 + sigma_t eps`` with ``alpha^2 + sigma^2 = 1``.

Every solver works in the half log-SNR ``lambda_t = log(alpha_t / sigma_t)`` (DPM-Solver, arXiv
2206.00927), so a schedule only has to give ``lambda(t)`` and its inverse; ``alpha`` and ``sigma``
follow from ``alpha^2 = sigmoid(2 lambda)``.

- :class:`DiscreteVPSchedule`: the DDPM beta schedules of diffusers (``"linear"``, ``"scaled_linear"``,
  ``"squaredcos_cap_v2"``) on the integer timesteps ``0 .. N-1``. The betas and their cumulative
  product are computed in float32 exactly as diffusers does (bit-identical ``alphas_cumprod``);
  ``lambda`` is interpolated linearly between integer timesteps (diffusers' ``_sigma_to_t``).
  The time ``-1`` stands for clean data (``alpha = 1, sigma = 0``), like diffusers'
  ``set_alpha_to_one`` / ``final_sigmas_type="zero"``.
- :class:`LinearVPSchedule`: the continuous-time VP-SDE of Song et al. (arXiv 2011.13456),
  ``log alpha_t = -(beta_1 - beta_0) t^2 / 4 - beta_0 t / 2`` on ``t in [0, 1]``; ``t = 0`` is data.

All values are float64 tensors.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _as_f64(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64).cpu()


class VPSchedule(ABC):
    """A VP noise schedule, parameterised by its half log-SNR ``lambda(t)`` (decreasing in ``t``).

    Attributes:
        t_max: the noisiest time (sampling starts here).
        t_min: the least noisy time with ``sigma > 0`` that grids may use.
        t_end: the time of clean data (``sigma = 0``, ``lambda = +inf``); a grid may end on it.
        key: a string that identifies the schedule (used to check that statistics, models and
            processes agree).
    """

    t_max: float
    t_min: float
    t_end: float

    @property
    @abstractmethod
    def key(self) -> str: ...

    @abstractmethod
    def _lambda(self, t: Tensor) -> Tensor:
        """``lambda`` for times in ``[t_min, t_max]`` (float64)."""

    @abstractmethod
    def _inverse(self, lam: Tensor) -> Tensor:
        """The time of a finite ``lambda`` in ``[lambda(t_max), lambda(t_min)]``."""

    def lambda_(self, t: Tensor | float) -> Tensor:
        """Half log-SNR ``log(alpha_t / sigma_t)``; ``+inf`` at ``t_end``. Shape of ``t``."""
        t = _as_f64(t)
        end = t == self.t_end
        self._check_range(torch.where(end, torch.full_like(t, self.t_max), t))
        lam = self._lambda(torch.where(end, torch.full_like(t, self.t_max), t))
        return torch.where(end, torch.full_like(lam, math.inf), lam)

    def alpha(self, t: Tensor | float) -> Tensor:
        """``alpha_t = sqrt(sigmoid(2 lambda))`` (1 at data)."""
        return torch.exp(-0.5 * F.softplus(-2.0 * self.lambda_(t)))

    def sigma(self, t: Tensor | float) -> Tensor:
        """``sigma_t = sqrt(sigmoid(-2 lambda))`` (0 at data)."""
        return torch.exp(-0.5 * F.softplus(2.0 * self.lambda_(t)))

    def t_of_lambda(self, lam: Tensor | float) -> Tensor:
        """Inverse of :meth:`lambda_` (``+inf`` maps to ``t_end``)."""
        lam = _as_f64(lam)
        inf = torch.isposinf(lam)
        lo, hi = float(self.lambda_(self.t_max)), self._lambda_max()
        finite = torch.where(inf, torch.full_like(lam, lo), lam)
        tol = 1e-6 * max(1.0, abs(lo))
        if bool(((finite < lo - tol) | (finite > hi + tol)).any()):
            raise ValueError(f"lambda must lie in [{lo:.4f}, {hi:.4f}] (or be +inf for data) for {self.key}")
        t = self._inverse(finite.clamp(lo, hi))
        return torch.where(inf, torch.full_like(t, self.t_end), t)

    def _lambda_max(self) -> float:
        """The largest finite ``lambda`` a time may have (``lambda(t_min)`` unless times go below ``t_min``)."""
        return float(self.lambda_(self.t_min))

    def _check_range(self, t: Tensor) -> None:
        lo, hi = min(self.t_min, self.t_max), max(self.t_min, self.t_max)
        if bool(((t < lo - 1e-9) | (t > hi + 1e-9) | torch.isnan(t)).any()):
            bad = t[(t < lo - 1e-9) | (t > hi + 1e-9) | torch.isnan(t)][:5].tolist()
            raise ValueError(
                f"times {bad} are outside [{lo}, {hi}] for schedule {self.key} (data is t = {self.t_end})"
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VPSchedule) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key})"


def _cosine_betas(n: int, max_beta: float = 0.999) -> Tensor:
    """diffusers' ``betas_for_alpha_bar`` (Nichol & Dhariwal 2021 cosine schedule, arXiv 2102.09672)."""

    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float32)


class DiscreteVPSchedule(VPSchedule):
    """DDPM's discrete schedule over integer timesteps ``0 .. N-1`` (Ho et al., arXiv 2006.11239).

    Args:
        beta_schedule: ``"linear"``, ``"scaled_linear"`` or ``"squaredcos_cap_v2"`` (diffusers' names).
        beta_start, beta_end: endpoints of the (scaled) linear betas.
        num_train_timesteps: ``N``.
        trained_betas: explicit betas (overrides the three above).
    """

    def __init__(
        self,
        beta_schedule: str = "linear",
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        num_train_timesteps: int = 1000,
        trained_betas: Tensor | list[float] | None = None,
    ) -> None:
        n = int(num_train_timesteps)
        if trained_betas is not None:
            betas = torch.as_tensor(trained_betas, dtype=torch.float32).flatten()
            n = betas.numel()
            name = "trained"
        elif beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
        elif beta_schedule == "squaredcos_cap_v2":
            betas = _cosine_betas(n)
        else:
            raise ValueError(f"unknown beta_schedule {beta_schedule!r}; choose one of {BETA_SCHEDULES}")
        if n < 2:
            raise ValueError(f"a discrete schedule needs at least 2 timesteps, got {n}")
        if bool(((betas <= 0) | (betas >= 1)).any()):
            raise ValueError("betas must lie in (0, 1)")
        if trained_betas is None:
            name = beta_schedule if beta_schedule == "squaredcos_cap_v2" else f"{beta_schedule}:{beta_start}:{beta_end}"
        else:
            name = f"trained:{hash(tuple(betas.tolist()))}"
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).to(torch.float64)
        ab = self.alphas_cumprod
        self.lambdas = 0.5 * (torch.log(ab) - torch.log1p(-ab))
        if bool((self.lambdas[1:] >= self.lambdas[:-1]).any()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        self.num_train_timesteps = n
        self.t_max, self.t_min, self.t_end = float(n - 1), 0.0, -1.0
        self._key = f"discrete:{name}:{n}"

    @property
    def key(self) -> str:
        return self._key

    def _lambda(self, t: Tensor) -> Tensor:
        n = self.num_train_timesteps
        lo = torch.clamp(torch.floor(t), 0, n - 2).long()
        w = t - lo.to(t.dtype)
        return (1 - w) * self.lambdas[lo] + w * self.lambdas[lo + 1]

    def _inverse(self, lam: Tensor) -> Tensor:
        rev = torch.flip(self.lambdas, [0])  # increasing
        n = self.num_train_timesteps
        j = torch.clamp(torch.searchsorted(rev, lam.contiguous()), 1, n - 1)  # rev[j-1] <= lam <= rev[j]
        lo_val, hi_val = rev[j - 1], rev[j]
        w = (lam - lo_val) / (hi_val - lo_val)
        # rev index j-1 is timestep n-j, rev index j is timestep n-1-j
        return (n - j).to(lam.dtype) - w


class LinearVPSchedule(VPSchedule):
    """The continuous-time VP-SDE with linear ``beta(t)`` (Song et al., arXiv 2011.13456).

    Args:
        beta_0, beta_1: ``beta(t) = beta_0 + (beta_1 - beta_0) t``.
        t_min: the smallest time grids use before the final step to data (``t = 0``).
    """

    def __init__(self, beta_0: float = 0.1, beta_1: float = 20.0, t_min: float = 1e-3) -> None:
        if not 0 < beta_0 < beta_1:
            raise ValueError(f"need 0 < beta_0 < beta_1, got {beta_0}, {beta_1}")
        if not 0 < t_min < 1:
            raise ValueError(f"t_min must lie in (0, 1), got {t_min}")
        self.beta_0, self.beta_1 = float(beta_0), float(beta_1)
        self.t_max, self.t_min, self.t_end = 1.0, float(t_min), 0.0

    @property
    def key(self) -> str:
        return f"linear_vp:{self.beta_0}:{self.beta_1}:{self.t_min}"

    def _check_range(self, t: Tensor) -> None:
        bad = (t <= 0) | (t > self.t_max + 1e-9) | torch.isnan(t)
        if bool(bad.any()):
            raise ValueError(
                f"times {t[bad][:5].tolist()} are outside (0, 1] for schedule {self.key} (data is t = 0)"
            )

    def _lambda_max(self) -> float:
        return math.inf

    def _lambda(self, t: Tensor) -> Tensor:
        log_alpha = -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0
        return log_alpha - 0.5 * torch.log(-torch.expm1(2.0 * log_alpha))

    def _inverse(self, lam: Tensor) -> Tensor:
        tmp = 2.0 * (self.beta_1 - self.beta_0) * F.softplus(-2.0 * lam)
        delta = self.beta_0**2 + tmp
        return tmp / (torch.sqrt(delta) + self.beta_0) / (self.beta_1 - self.beta_0)
