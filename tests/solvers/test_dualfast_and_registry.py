"""DualFast (the mixing rule, no extra NFE, what the paper promises), the solver registry and the ``sample`` API."""

from __future__ import annotations

import pytest
import torch

from decoding import decode
from decoding.core.types import Prediction
from decoding.denoisers import ClosedFormModel
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import (
    DDIM,
    EMS,
    DiscreteVPSchedule,
    DPMSolverPP,
    DualFast,
    StepInfo,
    UniPC,
    make_timesteps,
)
from decoding.solvers.api import sample
from decoding.solvers.reference import reference_solve
from decoding.solvers.registry import SOLVERS, get_solver
from decoding.solvers.timesteps import SPACINGS, default_spacing
from tests.solvers.problems import gaussian, mixture, noise, rmse, slope

SCHEDULE = DiscreteVPSchedule()


@pytest.mark.parametrize("base", [DDIM(), DPMSolverPP(2), UniPC(2), DPMSolverPP(3)])
@pytest.mark.parametrize("tau", ["previous", "first"])
def test_dualfast_with_zero_weight_is_the_base_solver(base, tau):
    x = noise(8, 4)
    ref = decode(ClosedFormModel(mixture()), ContinuousProcess(SCHEDULE, base), x, steps=7).x
    got = decode(ClosedFormModel(mixture()), ContinuousProcess(SCHEDULE, DualFast(base, 0.0, tau)), x, steps=7).x
    assert torch.equal(ref, got)


@pytest.mark.parametrize("tau", ["previous", "first"])
def test_dualfast_mixes_noise_predictions_as_documented(tau):
    """Step i hands the base ``(1 + c_i) eps_i - c_i eps_tau`` with ``c_i = c i / (N - 1)``."""
    ts = make_timesteps(SCHEDULE, 4)
    solver = DualFast(DDIM(), c=0.8, tau=tau)
    x = noise(3, 4)
    eps = [noise(3, 4, seed=5 + k) for k in range(3)]
    hist = None
    for i in range(3):
        info = StepInfo.make(SCHEDULE, ts, i)
        a, s, _ = info.s
        c = 0.8 * i / 3
        eps_tau = eps[0] if tau == "first" or i == 0 else eps[i - 1]
        mixed = (1 + c) * eps[i] - c * eps_tau
        want, _ = DDIM().step(x, Prediction(x0=(x - s * mixed) / a, eps=mixed), info, None)
        got, hist = solver.step(x, Prediction(eps=eps[i], x0=(x - s * eps[i]) / a), info, hist)
        assert solver.weight(info) == pytest.approx(c)
        assert torch.allclose(got, want, atol=1e-12)
        x = got


def test_dualfast_costs_no_extra_model_call():
    res = sample(ClosedFormModel(mixture()), (4, 4), "dualfast_ddim", steps=6, seed=0)
    assert res.total_nfe == 6


def _errors(model, x, ref, solver, ns, spacing="logsnr_trunc"):
    return [rmse(decode(model, ContinuousProcess(SCHEDULE, solver, spacing=spacing), x, steps=n).x, ref) for n in ns]


@pytest.mark.parametrize("data", [mixture(), gaussian()], ids=["mixture", "gaussian"])
def test_dualfast_ddim_is_more_accurate_than_ddim_at_few_steps(data):
    """The paper's promise (fewer steps for the same error, no extra NFE), on exact denoisers: DualFast-DDIM
    with the registry's weight lowers DDIM's error at NFE 5-10 by a fifth or more."""
    model = ClosedFormModel(data, SCHEDULE)
    x = noise(256, data.dim, seed=12)
    ref = reference_solve(model, SCHEDULE, x, [SCHEDULE.t_max, SCHEDULE.t_end], steps=300)[-1]
    ns = [5, 6, 8, 10]
    fast = _errors(model, x, ref, get_solver("dualfast_ddim"), ns)
    base = _errors(model, x, ref, DDIM(), ns)
    assert all(f < 0.8 * b for f, b in zip(fast, base, strict=True)), (fast, base)


def test_dualfast_with_the_previous_step_converges_and_with_the_first_does_not():
    """``tau = "previous"``: the correction is O(h), the error still falls with the step (first order, as
    DDIM); ``tau = "first"`` adds an O(1) change per step: the error stops falling."""
    data = gaussian()
    model = ClosedFormModel(data, SCHEDULE)
    x = noise(256, data.dim, seed=12)
    ref = reference_solve(model, SCHEDULE, x, [SCHEDULE.t_max, SCHEDULE.t_end], steps=400)[-1]
    ns = [20, 40, 80]
    prev = _errors(model, x, ref, DualFast(DDIM(), 0.5, "previous"), ns)
    first = _errors(model, x, ref, DualFast(DDIM(), 0.5, "first"), ns)
    assert slope(ns, prev) > 0.8, prev
    assert first[-1] > 0.5 * first[0], first


def test_dualfast_validates_its_options():
    with pytest.raises(ValueError, match="tau"):
        DualFast(DDIM(), 0.1, "middle")
    with pytest.raises(ValueError, match="c must be"):
        DualFast(DDIM(), -0.1)


def test_unknown_solver_lists_the_names():
    with pytest.raises(ValueError, match="unknown solver 'dpm_solver_99'; choose one of: .*dpmpp_2m.*unipc_bh2"):
        get_solver("dpm_solver_99")
    with pytest.raises(ValueError, match="bad options"):
        get_solver("ddim", order=7)
    with pytest.raises(ValueError, match="only apply when the solver is given by name"):
        sample(ClosedFormModel(mixture()), (2, 4), DDIM(), steps=3, eta=0.5)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_registered_solver_samples(name):
    options = {"ems": EMS.degenerate(SCHEDULE, (4,))} if name == "dpm_solver_v3" else {}
    res = sample(ClosedFormModel(mixture()), (6, 4), name, steps=5, seed=0, **options)
    assert res.x.shape == (6, 4) and torch.isfinite(res.x).all() and res.total_nfe == 5
    assert default_spacing(get_solver(name, **options)) in SPACINGS


def test_fewer_steps_than_the_order_needs():
    with pytest.raises(ValueError, match="needs at least 3 steps"):
        sample(ClosedFormModel(mixture()), (2, 4), "dpmpp_3m", steps=2, seed=0)
    with pytest.raises(ValueError, match="needs at least 3 steps"):
        sample(ClosedFormModel(mixture()), (2, 4), "unipc_3", steps=1, seed=0)
