"""Meng et al.'s stochastic N-step sampler: a written-out reference, and exact samples from a model whose jumps are exact."""

from __future__ import annotations

import math

import pytest
import torch

from decoding.core.loop import decode
from decoding.core.types import Prediction, State
from decoding.denoisers import ClosedFormModel, GaussianData
from decoding.distill.sampler import StochasticStepSampler
from decoding.distill.targets import step_target
from decoding.models.image import TRAIN_SCHEDULE, schedule_from_config
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.ddim import DDIM
from decoding.solvers.parameterization import to_prediction
from decoding.solvers.timesteps import make_timesteps

pytestmark = pytest.mark.one_thread
SCHEDULE = schedule_from_config(TRAIN_SCHEDULE)


def gaussian() -> GaussianData:
    a = torch.tensor([[1.0, 0.4, 0.0], [0.4, 0.5, -0.2], [0.0, -0.2, 0.3]], dtype=torch.float64)
    return GaussianData(torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64), a @ a.T + 0.05 * torch.eye(3, dtype=torch.float64))


class ExactJumps:
    """On Gaussian data: the data prediction whose DDIM step from grid point ``i`` to ``i + jump`` (at most the end)
    is the exact probability-flow map (:meth:`GaussianData.ode_map`), so a sampler that jumps that far is exact."""

    def __init__(self, data: GaussianData, jump: int) -> None:
        self.data, self.jump = data, jump

    def __call__(self, state: State) -> Prediction:
        grid = state.memory["grid"]
        i, j = state.step, min(state.step + self.jump, grid.numel() - 1)
        a_s, s_s, a_t, s_t = (float(f(grid[k])) for k in (i, j) for f in (SCHEDULE.alpha, SCHEDULE.sigma))
        z_t = self.data.ode_map(state.x, a_s, s_s, a_t, s_t)
        return to_prediction(step_target(state.x, a_s, s_s, z_t, a_t, s_t), "x0", state.x, a_s, s_s)


def run(model, solver, steps: int, n: int, seed: int = 0) -> torch.Tensor:  # noqa: ANN001
    noise = torch.randn(n, 3, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    process = ContinuousProcess(SCHEDULE, solver, spacing="time")
    return decode(model, process, noise, steps=steps, generator=torch.Generator().manual_seed(seed)).x


def test_matches_the_written_out_update() -> None:
    """z_k = alpha_k x + sigma_k (z - alpha x) / sigma (two grid steps), z_h = (alpha_h / alpha_k) z_k + sigma_{h|k} n,
    and a deterministic last step; the same noise draws as the decode loop."""
    data, steps, n = gaussian(), 6, 64
    got = run(ClosedFormModel(data), StochasticStepSampler(), steps, n, seed=3)
    ts = make_timesteps(SCHEDULE, steps, "time")
    alpha, sigma = SCHEDULE.alpha(ts), SCHEDULE.sigma(ts)
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(103), dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    for i in range(steps):
        x = data.denoise(z, float(alpha[i]), float(sigma[i]))
        if i == steps - 1:
            z = float(alpha[i + 1]) * x + float(sigma[i + 1]) * (z - float(alpha[i]) * x) / float(sigma[i])
            break
        a, s, a_k, s_k, a_h, s_h = (float(v) for v in (alpha[i], sigma[i], alpha[i + 2], sigma[i + 2], alpha[i + 1], sigma[i + 1]))
        z_k = a_k * x + s_k * (z - a * x) / s
        std = math.sqrt(s_h**2 - (a_h / a_k) ** 2 * s_k**2)
        z = (a_h / a_k) * z_k + std * torch.randn(z.shape, generator=g, dtype=torch.float64)
    assert torch.allclose(got, z, rtol=0, atol=1e-12)


def test_one_step_is_the_deterministic_sampler() -> None:
    data = gaussian()
    a = run(ClosedFormModel(data), StochasticStepSampler(), 1, 16)
    b = run(ClosedFormModel(data), DDIM(), 1, 16)
    assert torch.equal(a, b)


def test_deterministic_sampler_with_exact_one_step_jumps_is_the_ode_map() -> None:
    data = gaussian()
    got = run(ExactJumps(data, 1), DDIM(), 4, 32)
    z = torch.randn(32, 3, generator=torch.Generator().manual_seed(100), dtype=torch.float64)
    t = torch.tensor(SCHEDULE.t_max)
    want = data.ode_map(z, float(SCHEDULE.alpha(t)), float(SCHEDULE.sigma(t)), 1.0, 0.0)
    assert torch.allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("steps", [2, 4, 7])
def test_stochastic_sampler_with_exact_two_step_jumps_samples_the_data(steps: int) -> None:
    """Every renoising is the exact forward transition q(z_h | z_k): the samples are exactly N(mu, Sigma).

    Mean and covariance of 40,000 samples, each entry within 5 standard errors (a wrong renoising variance,
    e.g. sigma_h instead of sigma_{h|k}, moves the covariance by far more)."""
    data, n = gaussian(), 40_000
    x = run(ExactJumps(data, 2), StochasticStepSampler(), steps, n, seed=steps)
    mu, cov = data.mean, data.cov
    se_mu = (torch.diagonal(cov) / n).sqrt()
    assert bool(((x.mean(0) - mu).abs() < 5 * se_mu).all())
    var = torch.diagonal(cov)
    se_cov = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()
    assert bool(((x.T.cov() - cov).abs() < 5 * se_cov).all())
    assert not torch.allclose(x[:100], run(ExactJumps(data, 2), StochasticStepSampler(), steps, 100, seed=steps + 1))
