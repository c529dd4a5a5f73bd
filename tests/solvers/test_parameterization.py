"""eps / x0 / v conversions in one place, and the closed-form denoisers behind them."""

from __future__ import annotations

import pytest
import torch

from decoding import decode
from decoding.core.types import Prediction, State
from decoding.denoisers import ClosedFormModel, EmpiricalData
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import DiscreteVPSchedule, DPMSolverPP, NetworkModel
from decoding.solvers.parameterization import data_prediction, noise_prediction, to_prediction
from tests.solvers.problems import gaussian, mixture, noise


def test_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 3, generator=g, dtype=torch.float64)
    a = torch.rand(5, generator=g, dtype=torch.float64) * 0.9 + 0.05
    s = (1 - a**2).sqrt()
    x = a[:, None] * x0 + s[:, None] * eps
    v = a[:, None] * eps - s[:, None] * x0
    for kind, out in (("eps", eps), ("x0", x0), ("v", v)):
        p = to_prediction(out, kind, x, a, s)
        assert torch.allclose(p.x0, x0, atol=1e-12) and torch.allclose(p.eps, eps, atol=1e-12), kind
    assert torch.allclose(data_prediction(Prediction(eps=eps), x, a, s), x0, atol=1e-12)
    assert torch.allclose(noise_prediction(Prediction(x0=x0), x, a, s), eps, atol=1e-12)
    with pytest.raises(ValueError, match="neither"):
        data_prediction(Prediction(), x, a, s)
    with pytest.raises(ValueError, match="prediction type"):
        to_prediction(eps, "score", x, a, s)


@pytest.mark.parametrize("output", ["eps", "v"])
def test_model_parameterisation_does_not_change_the_trajectory(output):
    schedule = DiscreteVPSchedule()
    data = mixture()
    x = noise(8, data.dim)
    ref = decode(ClosedFormModel(data), ContinuousProcess(schedule, DPMSolverPP(2)), x, steps=8).x
    got = decode(ClosedFormModel(data, output=output), ContinuousProcess(schedule, DPMSolverPP(2)), x, steps=8).x
    assert torch.allclose(ref, got, atol=1e-9)


def test_network_model_and_schedule_mismatch():
    schedule = DiscreteVPSchedule()
    data = gaussian(3)

    def net(x, t):
        return data.denoise(x, schedule.alpha(t.double()), schedule.sigma(t.double()))

    x = noise(4, 3)
    ref = decode(ClosedFormModel(data), ContinuousProcess(schedule, DPMSolverPP(2)), x, steps=6).x
    got = decode(NetworkModel(net, schedule, "x0"), ContinuousProcess(schedule, DPMSolverPP(2)), x, steps=6).x
    assert torch.allclose(ref, got, atol=1e-12)
    other = DiscreteVPSchedule("scaled_linear", 0.00085, 0.012)
    with pytest.raises(ValueError, match="schedule"):
        decode(NetworkModel(net, schedule, "x0"), ContinuousProcess(other, DPMSolverPP(2)), x, steps=6)


def test_gaussian_denoiser_is_the_posterior_mean():
    """E[x0 | x] by Monte Carlo over the joint (x0, x) at a fixed seed agrees with the closed form."""
    data = gaussian(2)
    g = torch.Generator().manual_seed(3)
    x0 = data.sample(400_000, g)
    a, s = 0.6, 0.8
    x = a * x0 + s * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    # E[x0 | x] is linear in x: regress x0 on (1, x) and compare the fitted means at a few points
    feats = torch.cat([torch.ones(len(x), 1, dtype=torch.float64), x], 1)
    coef = torch.linalg.lstsq(feats, x0).solution
    pts = torch.randn(5, 2, generator=g, dtype=torch.float64)
    fitted = torch.cat([torch.ones(5, 1, dtype=torch.float64), pts], 1) @ coef
    assert torch.allclose(fitted, data.denoise(pts, a, s), atol=0.01)


def test_mixture_and_empirical_denoisers_agree_with_brute_force():
    data = mixture(3)
    x = noise(6, 3)
    a, s = 0.7, (1 - 0.49) ** 0.5
    # brute force over components with explicit covariance matrices
    num, den = torch.zeros(6, 3, dtype=torch.float64), torch.zeros(6, 1, dtype=torch.float64)
    for k in range(2):
        c = a * a * data.covs[k] + s * s * torch.eye(3, dtype=torch.float64)
        dist = torch.distributions.MultivariateNormal(a * data.means[k], c)
        w = data.log_w[k].exp() * dist.log_prob(x).exp()[:, None]
        mean = data.means[k] + (a * data.covs[k] @ torch.linalg.solve(c, (x - a * data.means[k]).T)).T
        num, den = num + w * mean, den + w
    assert torch.allclose(data.denoise(x, a, s), num / den, atol=1e-12)
    pts = torch.randn(7, 1, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    emp = EmpiricalData(pts)
    xq = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    d2 = ((xq.reshape(3, 1, 4) - a * pts.reshape(1, 7, 4)) ** 2).sum(-1)
    w = torch.softmax(-d2 / (2 * s * s), dim=1)
    assert torch.allclose(emp.denoise(xq, a, s), (w @ pts.reshape(7, 4)).reshape(3, 1, 2, 2), atol=1e-12)
    near = emp.denoise(a * pts[:3], a, 1e-4)  # tiny noise: the nearest training point itself
    assert torch.allclose(near, pts[:3], atol=1e-9)


def test_closed_form_model_refuses_sigma_zero():
    schedule = DiscreteVPSchedule()
    state = State(x=noise(2, 6), t=torch.full((2,), -1.0, dtype=torch.float64), done=torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="sigma = 0"):
        ClosedFormModel(gaussian(), schedule)(state)
