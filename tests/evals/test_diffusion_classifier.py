"""The diffusion classifier (arXiv 2303.16203) on closed-form class-conditional models."""

from __future__ import annotations

import math

import pytest
import torch

from decoding.evals.closed_form import ClassGaussianModel, fit_class_gaussians
from decoding.evals.diffusion_classifier import (
    GOLDEN,
    accuracy_curve,
    denoising_errors,
    noise_times,
    predictions_by_n,
)


def _means(k: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(k, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def test_with_point_classes_it_is_the_nearest_mean_classifier():
    # Data of class c is exactly mu_c: eps_hat = eps + (alpha / sigma)(x0 - mu_c), so every draw
    # ranks classes by ||x0 - mu_c||: the classifier must agree with nearest-mean for any n.
    mu = _means()
    model = ClassGaussianModel(mu, torch.full_like(mu, 1e-12))
    x = mu[torch.tensor([0, 1, 2, 3, 1, 2])] + 0.8 * torch.randn(
        6, 1, 6, 6, generator=torch.Generator().manual_seed(1)
    )
    errors = denoising_errors(model, x, 3, torch.Generator().manual_seed(2), t_range=(0.1, 0.9))
    nearest = ((x[:, None] - mu[None]) ** 2).flatten(2).sum(-1).argmin(-1).tolist()
    preds = predictions_by_n(errors, [1, 3])
    assert preds[1] == nearest and preds[3] == nearest


def test_errors_match_the_closed_form_expectation():
    # For Gaussian classes, E_eps ||eps - eps_hat||^2 / D = mean((a^4 v^2 + s^2 a^2 (x0 - mu)^2) / (a^2 v + s^2)^2).
    mu = _means(2)
    var = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(3)) + 0.1
    model = ClassGaussianModel(mu, var)
    x = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    n = 4000
    g = torch.Generator().manual_seed(5)
    errors = denoising_errors(model, x, n, g, t_range=(0.5, 0.5 + 1e-9))
    t = model.schedule.t_min + 0.5 * (model.schedule.t_max - model.schedule.t_min)
    a2, s2 = model.schedule.alpha(t) ** 2, model.schedule.sigma(t) ** 2
    expected = (
        (
            (a2 * a2 * var.double() ** 2 + s2 * a2 * (x.double() - mu.double()) ** 2)
            / (a2 * var.double() + s2) ** 2
        )
        .flatten(1)
        .mean(1)
    )
    got = errors[0].mean(0)
    assert torch.allclose(got, expected, rtol=0.03), (got, expected)  # 4000 draws: ~1% noise


def test_noise_times_spread_every_prefix():
    ts = noise_times(torch.tensor([0.3]), 8, 0.0, 1.0)[0]
    assert ts[0] == pytest.approx(0.3) and ts[1] == pytest.approx((0.3 + GOLDEN) % 1)
    assert len(set(torch.floor(ts[:5] * 5).tolist())) >= 4  # 5 points fall into >= 4 of 5 bins


def test_gaussian_fit_and_accuracy_curve():
    x = torch.cat([torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)])
    x[0] += 0.1
    mean, var = fit_class_gaussians(x, torch.tensor([0, 0, 0, 1, 1, 1]), 2)
    assert (
        mean[1].eq(1).all()
        and var[1].eq(1e-4).all()
        and math.isclose(float(mean[0, 0, 0, 0]), 0.1 / 3, rel_tol=1e-5)
    )
    recs = [
        {"output": {"label": 1, "pred": {"1": 0, "5": 1}}},
        {"output": {"label": 0, "pred": {"1": 0, "5": 0}}},
    ]
    assert accuracy_curve(recs)["x"] == [1, 5]
    assert accuracy_curve(recs)["y"] == [0.5, 1.0]


def test_bad_inputs():
    mu = _means(2)
    model = ClassGaussianModel(mu, torch.ones_like(mu))
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        denoising_errors(model, mu, 0, g)
    with pytest.raises(ValueError, match="t_range"):
        denoising_errors(model, mu, 1, g, t_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="variances must be > 0"):
        ClassGaussianModel(mu, torch.zeros_like(mu))
