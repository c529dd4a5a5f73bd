"""The continuous-diffusion process in the decode loop: state, memory, NFE, reproducibility, bad input."""

from __future__ import annotations

import pytest
import torch

from decoding import decode
from decoding.core.types import Prediction
from decoding.denoisers import ClosedFormModel, GaussianData
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import DDIM, DiscreteVPSchedule, DPMSolverPP, LinearVPSchedule, UniPC

SCHEDULE = DiscreteVPSchedule()


pytestmark = pytest.mark.one_thread  # tiny tensors: thread hand-offs would dominate


def _data() -> GaussianData:
    return GaussianData(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.3, 1.0, 0.1]))


def test_state_memory_and_nfe():
    seen = []
    model = ClosedFormModel(_data())
    res = decode(
        model, ContinuousProcess(SCHEDULE, UniPC(2)), (4, 3), steps=7, seed=0,
        callback=lambda i, s, p: seen.append((i, s.step, bool(s.done.all()), float(s.t[0]))),
    )
    assert res.steps == 7 and torch.equal(res.nfe, torch.full((4,), 7.0, dtype=torch.float64))
    assert [s[1] for s in seen] == list(range(1, 8)) and [s[2] for s in seen] == [False] * 6 + [True]
    assert seen[-1][3] == SCHEDULE.t_end
    mem = res.state.memory
    assert mem["schedule"] == SCHEDULE and mem["grid"].shape == (8,) and mem["solver"] is not None
    assert res.x.dtype == torch.float32 and res.x.shape == (4, 3)


def test_seed_reproducible_and_noise_tensor_prompt():
    model = ClosedFormModel(_data())
    a = decode(model, ContinuousProcess(SCHEDULE, DPMSolverPP(2)), (3, 3), steps=5, seed=11).x
    b = decode(model, ContinuousProcess(SCHEDULE, DPMSolverPP(2)), (3, 3), steps=5, seed=11).x
    assert torch.equal(a, b)
    x_t = torch.randn(3, 3, generator=torch.Generator().manual_seed(11))
    c = decode(model, ContinuousProcess(SCHEDULE, DPMSolverPP(2)), x_t, steps=5).x
    assert torch.equal(a, c)


def test_stochastic_solver_draws_noise_from_the_generator():
    model = ClosedFormModel(_data())
    proc = ContinuousProcess(SCHEDULE, DPMSolverPP(2, sde=True), dtype=torch.float64)
    a = decode(model, proc, (64, 3), steps=10, seed=1).x
    b = decode(model, proc, (64, 3), steps=10, seed=2).x
    c = decode(model, proc, (64, 3), steps=10, seed=1).x
    assert torch.equal(a, c) and not torch.allclose(a, b)
    eta = decode(model, ContinuousProcess(SCHEDULE, DDIM(eta=1.0)), (64, 3), steps=10, seed=1).x
    assert torch.isfinite(eta).all()


def test_samples_reach_the_data_distribution():
    """DPM-Solver++(2M) at 25 steps on Gaussian data: sample mean and variance match."""
    data = _data()
    x = decode(ClosedFormModel(data), ContinuousProcess(LinearVPSchedule(), DPMSolverPP(2), dtype=torch.float64),
               (8000, 3), steps=25, seed=0).x
    assert torch.allclose(x.mean(0), data.mean, atol=0.04)
    assert torch.allclose(x.var(0), torch.diag(data.cov), rtol=0.05)


def test_bad_input():
    model = ClosedFormModel(_data())
    with pytest.raises(ValueError, match="at least 3 steps"):
        decode(model, ContinuousProcess(SCHEDULE, DPMSolverPP(3)), (2, 3), steps=2, seed=0)
    with pytest.raises(ValueError, match="timesteps given"):
        decode(model, ContinuousProcess(SCHEDULE, DDIM(), timesteps=[999, 500, -1]), (2, 3), steps=3, seed=0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ContinuousProcess(SCHEDULE, DDIM(), timesteps=[500, 700, -1])
    with pytest.raises(ValueError, match="shape"):
        decode(model, ContinuousProcess(SCHEDULE, DDIM()), (3,), steps=3, seed=0)
    proc = ContinuousProcess(SCHEDULE, DDIM())
    state = proc.init((2, 3), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="no time grid"):  # the process keeps no grid of its own
        proc.step(state, Prediction(x0=torch.zeros(2, 3)), torch.tensor(123.0), torch.Generator())
    state = state.remember(grid=proc.schedule(4))
    with pytest.raises(ValueError, match="not step 1"):
        proc.step(state, Prediction(x0=torch.zeros(2, 3)), torch.tensor(123.0), torch.Generator())


def test_user_timesteps_and_intermediate_end():
    data = _data()
    ts = [999.0, 600.0, 300.0, 100.0]
    res = decode(ClosedFormModel(data), ContinuousProcess(SCHEDULE, DDIM(), timesteps=ts, dtype=torch.float64),
                 (5, 3), steps=3, seed=0)
    assert float(res.state.t[0]) == 100.0
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for s, t in zip(ts[:-1], ts[1:], strict=True):  # DDIM by hand: x_t = alpha_t x0 + sigma_t eps
        a_s, s_s, a_t, s_t = (float(v) for v in (SCHEDULE.alpha(s), SCHEDULE.sigma(s), SCHEDULE.alpha(t), SCHEDULE.sigma(t)))
        x0 = data.denoise(x, a_s, s_s)
        x = a_t * x0 + s_t * (x - a_s * x0) / s_s
    assert torch.allclose(res.x, x, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_seconds_include_the_devices_work():
    """A continuous run keeps ``done`` on the CPU, so the loop's own reads never wait for the GPU; ``seconds``
    must still include the device's work (here 0.25-0.5 s of ``torch.cuda._sleep`` queued by a 1-step model)."""
    x_t = torch.randn(2, 3, device="cuda")
    cycles = 500_000_000  # at 1-2 GHz

    def slow_model(state):
        torch.cuda._sleep(cycles)  # queued: returns at once
        return Prediction(x0=torch.zeros_like(state.x))

    decode(slow_model, ContinuousProcess(SCHEDULE, DDIM()), x_t, steps=1)  # warm-up
    res = decode(slow_model, ContinuousProcess(SCHEDULE, DDIM()), x_t, steps=1)
    assert res.state.done.device.type == "cpu" and res.seconds > 0.1
