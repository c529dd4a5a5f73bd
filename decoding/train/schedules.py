"""Learning-rate and EMA schedules of the trainers: pure functions of the step, so a resumed run
continues them exactly.

- :func:`learning_rate`: linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``total``
  (Loshchilov & Hutter, arXiv:1608.03983, without restarts).
- :func:`ema_decay`: either the classical constant decay with a short warm-up
  (``min(decay, (1 + t) / (10 + t))``), or the power-function EMA of EDM2 (Karras et al.,
  arXiv:2312.02696, sec. 3.1): ``beta_t = (1 - 1/t)^(gamma + 1)``, which averages the weights of
  steps ``1..t`` with weights proportional to ``s^(gamma+1) - (s-1)^(gamma+1)`` (``~ s^gamma``):
  an average whose standard deviation is a fixed fraction ``sigma_rel`` of the run's length, whatever that
  length is. :func:`power_ema_gamma` converts ``sigma_rel`` to ``gamma``.
"""

from __future__ import annotations

import functools
import math


def learning_rate(step: int, total: int, lr: float, warmup: int, min_lr_ratio: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based) in a run of ``total`` steps.

    ``lr * (step + 1) / warmup`` for the first ``warmup`` steps, then a half cosine from ``lr``
    down to ``min_lr_ratio * lr`` at ``step == total`` (constant after).
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def power_ema_sigma_rel(gamma: float) -> float:
    """EDM2's ``sigma_rel`` of the power-function EMA profile ``t^gamma`` (eq. 3): its standard
    deviation divided by the run's length."""
    return math.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0)))


@functools.lru_cache(maxsize=16)
def power_ema_gamma(sigma_rel: float) -> float:
    """The exponent ``gamma >= 0`` whose profile has relative width ``sigma_rel`` (in ``(0, 12^-1/2]``).

    ``sigma_rel`` decreases monotonically on ``gamma >= 0`` from ``12^-1/2 = 0.2887`` (``gamma = 0``,
    a uniform average over the whole run); solved by bisection in log space. EDM2 quotes
    ``sigma_rel = 0.05 <-> gamma = 16.97`` and ``0.10 <-> 6.94``.
    """
    top = power_ema_sigma_rel(0.0)
    if not 0.0 < sigma_rel <= top:
        raise ValueError(f"--ema-std must lie in (0, {top:.4f}], got {sigma_rel}")
    lo, hi = 0.0, 1e9
    for _ in range(200):
        mid = math.sqrt((lo + 1.0) * (hi + 1.0)) - 1.0
        if power_ema_sigma_rel(mid) > sigma_rel:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def ema_decay(step: int, decay: float | None = None, sigma_rel: float | None = None) -> float:
    """The decay ``beta`` of the EMA update after optimizer step number ``step`` (1-based).

    ``ema <- beta * ema + (1 - beta) * weights``. Give ``decay`` (classical, warmed up as
    ``min(decay, (1 + step) / (10 + step))``) or ``sigma_rel`` (EDM2's power function,
    ``beta = (1 - 1/step)^(gamma + 1)``; ``beta = 0`` at step 1, so the EMA starts at the weights).
    """
    if step < 1:
        raise ValueError(f"EMA steps count from 1, got {step}")
    if (decay is None) == (sigma_rel is None):
        raise ValueError("give exactly one of the EMA decay and the EMA relative width (sigma_rel)")
    if sigma_rel is not None:
        return (1.0 - 1.0 / step) ** (power_ema_gamma(sigma_rel) + 1.0)
    assert decay is not None
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"--ema-decay must lie in [0, 1), got {decay}")
    return min(decay, (1.0 + step) / (10.0 + step))
