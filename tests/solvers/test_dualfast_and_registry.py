"""DualFast wrapper algebra, the solver registry and the ``sample`` API."""

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
from decoding.solvers.registry import SOLVERS, get_solver
from tests.solvers.problems import mixture, noise

SCHEDULE = DiscreteVPSchedule()


@pytest.mark.parametrize("base", [DDIM(), DPMSolverPP(2), UniPC(2), DPMSolverPP(3)])
def test_dualfast_with_zero_mixing_is_the_base_solver(base):
    data = mixture()
    x = noise(8, 4)
    ref = decode(ClosedFormModel(data), ContinuousProcess(SCHEDULE, base), x, steps=7).x
    got = decode(ClosedFormModel(data), ContinuousProcess(SCHEDULE, DualFast(base, c=0.0)), x, steps=7).x
    assert torch.equal(ref, got)


def test_dualfast_mixes_predictions_as_documented():
    ts = make_timesteps(SCHEDULE, 4)
    solver = DualFast(DDIM(), c=0.8)
    x = noise(3, 4)
    m0, m1 = noise(3, 4, seed=5), noise(3, 4, seed=6)
    x1, hist = solver.step(x, Prediction(x0=m0), StepInfo.make(SCHEDULE, ts, 0), None)
    ref1, _ = DDIM().step(x, Prediction(x0=m0), StepInfo.make(SCHEDULE, ts, 0), None)
    assert torch.equal(x1, ref1)  # x0 - x0_ref = 0 on the first step
    info = StepInfo.make(SCHEDULE, ts, 1)
    w = 0.8 * (float(ts[1]) - float(ts[3])) / (float(ts[0]) - float(ts[3]))
    assert solver.weight(info) == pytest.approx(w) and solver.weight(StepInfo.make(SCHEDULE, ts, 3)) == 0.0
    x2, _ = solver.step(x1, Prediction(x0=m1), info, hist)
    ref2, _ = DDIM().step(x1, Prediction(x0=m1 + w * (m1 - m0)), info, None)
    assert torch.allclose(x2, ref2, atol=1e-14)


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


def test_fewer_steps_than_the_order_needs():
    with pytest.raises(ValueError, match="needs at least 3 steps"):
        sample(ClosedFormModel(mixture()), (2, 4), "dpmpp_3m", steps=2, seed=0)
    with pytest.raises(ValueError, match="needs at least 3 steps"):
        sample(ClosedFormModel(mixture()), (2, 4), "unipc_3", steps=1, seed=0)


def test_dualfast_warns_that_it_is_unverified():
    with pytest.warns(UserWarning, match="does not converge"):
        get_solver("dualfast_dpmpp_2m")
