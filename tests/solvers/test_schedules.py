"""Schedules and time grids: diffusers-identical betas, closed forms, spacings, validation errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from decoding.solvers import DiscreteVPSchedule, LinearVPSchedule, make_timesteps, validate_timesteps


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("linear", {}), ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}), ("squaredcos_cap_v2", {})],
)
def test_discrete_betas_are_bit_identical_to_diffusers(name, kwargs):
    diffusers = pytest.importorskip("diffusers")
    ours = DiscreteVPSchedule(name, **kwargs)
    theirs = diffusers.DDPMScheduler(beta_schedule=name, **kwargs)
    assert torch.equal(ours.betas, theirs.betas)
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod.double())
    t = torch.arange(1000, dtype=torch.float64)
    assert torch.allclose(ours.alpha(t) ** 2, theirs.alphas_cumprod.double(), rtol=1e-12, atol=0)


def test_discrete_interpolates_log_snr_linearly_and_inverts():
    s = DiscreteVPSchedule()
    t = torch.tensor([999.0, 600.25, 10.5, 0.0], dtype=torch.float64)
    lam = s.lambda_(t)
    assert float(lam[2]) == pytest.approx(0.5 * float(s.lambdas[10] + s.lambdas[11]), abs=1e-14)
    assert torch.allclose(s.t_of_lambda(lam), t, atol=1e-10)
    assert float(s.alpha(-1.0)) == 1.0 and float(s.sigma(-1.0)) == 0.0 and math.isinf(float(s.lambda_(-1.0)))
    assert torch.allclose(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones(4, dtype=torch.float64), atol=1e-15)


def test_linear_vp_closed_form():
    s = LinearVPSchedule()
    t = torch.tensor([1.0, 0.5, 1e-3, 1e-6], dtype=torch.float64)
    log_alpha = -0.25 * t**2 * (20 - 0.1) - 0.5 * t * 0.1
    assert torch.allclose(s.alpha(t), log_alpha.exp(), rtol=1e-14)
    assert torch.allclose(s.sigma(t), (1 - (2 * log_alpha).exp()).sqrt(), rtol=1e-9)
    assert torch.allclose(s.t_of_lambda(s.lambda_(t)), t, rtol=1e-9)
    assert float(s.sigma(0.0)) == 0.0


@pytest.mark.parametrize("schedule", [DiscreteVPSchedule(), LinearVPSchedule()])
@pytest.mark.parametrize("spacing", ["time", "logsnr", "karras", "logsnr_trunc"])
@pytest.mark.parametrize("steps", [1, 2, 3, 7])
def test_spacings_start_at_t_max_end_at_data_and_decrease(schedule, spacing, steps):
    ts = make_timesteps(schedule, steps, spacing)
    assert ts.shape == (steps + 1,) and ts.dtype == torch.float64
    assert float(ts[0]) == schedule.t_max and float(ts[-1]) == schedule.t_end
    lam = schedule.lambda_(ts)
    assert bool((lam[1:] > lam[:-1]).all())


COSINE = DiscreteVPSchedule("squaredcos_cap_v2")  # the trained Fashion-MNIST models' schedule: lambda in [-9.9, 5.0]


@pytest.mark.parametrize("steps", [3, 5, 10, 20])
def test_logsnr_trunc_jumps_to_the_floor_then_is_uniform(steps):
    """t_max, then steps - 1 points uniform in lambda from the floor (-4) to t_min, then data."""
    ts = make_timesteps(COSINE, steps, "logsnr_trunc")
    lam = COSINE.lambda_(ts[1:-1])
    assert float(ts[0]) == COSINE.t_max and float(COSINE.lambda_(ts[0])) < -9.9
    want = torch.linspace(-4.0, float(COSINE.lambda_(COSINE.t_min)), steps - 1, dtype=torch.float64)
    assert torch.allclose(lam, want, atol=1e-9)
    other = make_timesteps(COSINE, steps, "logsnr_trunc", lambda_floor=-3.0)
    assert float(COSINE.lambda_(other[1])) == pytest.approx(-3.0, abs=1e-9)


def test_logsnr_trunc_is_logsnr_where_there_is_nothing_to_cut():
    """A schedule that starts above the floor (linear betas start at lambda = -5.06 > -6) keeps the plain grid."""
    s = DiscreteVPSchedule()
    for steps in (1, 2, 6):
        plain = make_timesteps(s, steps, "logsnr")
        assert torch.equal(make_timesteps(s, steps, "logsnr_trunc", lambda_floor=-6.0), plain)
        assert torch.equal(make_timesteps(COSINE, steps, "logsnr_trunc", lambda_floor=-20.0),
                           make_timesteps(COSINE, steps, "logsnr"))


def test_default_spacing_of_solvers():
    from decoding.solvers import DDIM, DPMSolverPP, DualFast, UniPC
    from decoding.solvers.timesteps import SPACINGS, default_spacing

    for solver in (DDIM(), DPMSolverPP(2), DPMSolverPP(3), UniPC(2), UniPC(3)):
        assert default_spacing(solver) in SPACINGS
    # the grids measured best on the retrained fashion-large (docs/perf/solvers.md, section 3.2)
    assert default_spacing(DDIM()) == default_spacing(DDIM(eta=1.0)) == "time"
    for solver in (DPMSolverPP(2), DPMSolverPP(3), UniPC(2, "bh1"), UniPC(2, "bh2"), UniPC(3)):
        assert default_spacing(solver) == "logsnr_trunc"
    # DualFast runs on its base's grid (FID on fashion-large, docs/perf/solvers_fid.md)
    for base in (DDIM(), DPMSolverPP(2), UniPC(2, "bh2")):
        assert default_spacing(DualFast(base, 0.1)) == default_spacing(base)
    assert default_spacing(object()) == "logsnr"

    class Odd:
        default_spacing = "cubic"

    with pytest.raises(ValueError, match="default_spacing is 'cubic'"):
        default_spacing(Odd())


def test_logsnr_is_uniform_and_karras_matches_diffusers():
    s = DiscreteVPSchedule()
    lam = s.lambda_(make_timesteps(s, 6, "logsnr")[:-1])
    assert torch.allclose(lam[1:] - lam[:-1], (lam[1] - lam[0]).expand(5), atol=1e-10)
    sig = torch.exp(-s.lambda_(make_timesteps(s, 6, "karras")[:-1]))
    d = pytest.importorskip("diffusers").DPMSolverMultistepScheduler()
    theirs = d._convert_to_karras(torch.exp(-s.lambdas.flip(0)), 6)
    # Both float64 from the same sigmas; only the rounding of exp/log and rho-th powers differs
    # (4.4e-16 relative measured with diffusers 0.42.1).
    assert np.allclose(sig.numpy(), np.asarray(theirs), rtol=1e-13, atol=0)


def test_time_spacing_is_diffusers_linspace_without_rounding():
    s = DiscreteVPSchedule()
    ts = make_timesteps(s, 10, "time")
    assert np.allclose(ts[:-1].numpy(), np.linspace(0, 999, 11)[::-1][:-1])


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([999.0, 999.0, -1.0], "strictly decreasing"),
        ([500.0, 700.0, -1.0], "strictly decreasing"),
        ([1200.0, 500.0, -1.0], "outside"),
        ([999.0, -1.0, 10.0], "only be the last"),
        ([999.0], "at least 2"),
        ([999.0, float("nan")], "finite"),
    ],
)
def test_user_timesteps_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_timesteps(DiscreteVPSchedule(), bad)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="beta_schedule"):
        DiscreteVPSchedule("cosine")
    with pytest.raises(ValueError, match="spacing"):
        make_timesteps(DiscreteVPSchedule(), 5, "uniform")
    with pytest.raises(ValueError, match="positive integer"):
        make_timesteps(DiscreteVPSchedule(), 0)
    with pytest.raises(ValueError, match="beta_0"):
        LinearVPSchedule(beta_0=30.0)
