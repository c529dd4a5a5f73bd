"""Learning-rate and EMA schedules (decoding.train.schedules): closed forms, EDM2's quoted values."""

from __future__ import annotations

import math

import pytest
import torch

from decoding.train.schedules import ema_decay, learning_rate, power_ema_gamma, power_ema_sigma_rel


def test_learning_rate_warmup_cosine_floor() -> None:
    assert learning_rate(0, 100, 1e-3, 10, 0.1) == pytest.approx(1e-4)
    assert learning_rate(9, 100, 1e-3, 10, 0.1) == pytest.approx(1e-3)
    assert learning_rate(55, 100, 1e-3, 10, 0.1) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half-way: cos = 0
    assert learning_rate(100, 100, 1e-3, 10, 0.1) == pytest.approx(1e-4)
    assert learning_rate(500, 100, 1e-3, 10, 0.1) == pytest.approx(1e-4)


def test_power_ema_matches_edm2_quoted_values() -> None:
    """EDM2 (arXiv:2312.02696, sec. 3.1): sigma_rel 0.05 <-> gamma 16.97, 0.10 <-> 6.94."""
    assert power_ema_gamma(0.05) == pytest.approx(16.97, abs=0.01)
    assert power_ema_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    for g in (0.5, 3.0, 40.0):
        assert power_ema_gamma(power_ema_sigma_rel(g)) == pytest.approx(g, rel=1e-9)
    with pytest.raises(ValueError, match="ema-std"):
        power_ema_gamma(0.3)


def test_power_ema_weights_are_the_closed_form() -> None:
    """Unrolled, beta_t = (1 - 1/t)^(g+1) weights step s by (s^(g+1) - (s-1)^(g+1)) / T^(g+1): exact telescoping."""
    sigma_rel, steps = 0.1, 200
    g = power_ema_gamma(sigma_rel)
    theta = torch.randn(steps, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ema = torch.zeros((), dtype=torch.float64)
    for t in range(1, steps + 1):
        beta = ema_decay(t, sigma_rel=sigma_rel)
        ema = beta * ema + (1 - beta) * theta[t - 1]
    s = torch.arange(1, steps + 1, dtype=torch.float64)
    w = (s ** (g + 1) - (s - 1) ** (g + 1)) / steps ** (g + 1)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(ema) == pytest.approx(float((w * theta).sum()), abs=1e-12)
    # and the profile's standard deviation is sigma_rel times the run's length (large T)
    T = 100_000
    s = torch.arange(1, T + 1, dtype=torch.float64) / T
    w = s ** (g + 1) - (s - 1 / T) ** (g + 1)
    mean = float((w * s).sum())
    assert math.sqrt(float((w * (s - mean) ** 2).sum())) == pytest.approx(sigma_rel, rel=1e-3)


def test_classical_ema_decay_warms_up() -> None:
    assert ema_decay(1, decay=0.999) == pytest.approx(2 / 11)
    assert ema_decay(10**6, decay=0.999) == 0.999
    with pytest.raises(ValueError, match="exactly one"):
        ema_decay(5, decay=0.9, sigma_rel=0.1)
    with pytest.raises(ValueError, match="count from 1"):
        ema_decay(0, decay=0.9)
