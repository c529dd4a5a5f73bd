"""Step-for-step equality with diffusers' schedulers (test-only peer), float64 samples, tolerance 1e-5.

The same closed-form eps-network and the same timesteps drive diffusers' ``step`` loop and our
decode loop (``timesteps = scheduler.timesteps + [data]``); every intermediate sample must agree.
diffusers computes its coefficients in float32, hence differences of ~1e-7, far below 1e-5. The
multistep schedulers are compared on the linear and scaled-linear betas: with "squaredcos_cap_v2"
``alphas_cumprod[999]`` is ~2e-9 and diffusers' float32 ``x0 = (x - sigma eps) / alpha`` is off by
~1e-3 on the first step (its DDIM, which starts at t = 900, is compared on all three).
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler  # noqa: E402

from decoding import decode  # noqa: E402
from decoding.core.types import State  # noqa: E402
from decoding.processes.continuous import ContinuousProcess  # noqa: E402
from decoding.solvers import DDIM, DiscreteVPSchedule, DPMSolverPP, StepInfo, UniPC  # noqa: E402
from decoding.solvers.parameterization import NetworkModel, bcast  # noqa: E402
from tests.solvers.problems import mixture, noise  # noqa: E402

TOL = 1e-5
BETAS = {
    "linear": {},
    "scaled_linear": {"beta_start": 0.00085, "beta_end": 0.012},
    "squaredcos_cap_v2": {},
}


def _eps_net(schedule: DiscreteVPSchedule):
    data = mixture()

    def net(x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        tt = torch.full((x.shape[0],), float(t), dtype=torch.float64) if not torch.is_tensor(t) or t.dim() == 0 else t
        a, s = schedule.alpha(tt.double()), schedule.sigma(tt.double())
        x0 = data.denoise(x, a, s)
        return (x - bcast(a, x) * x0) / bcast(s, x)

    return net


def _compare(scheduler, solver, steps: int, beta_schedule: str, noises=None, step_kwargs=None) -> list[float]:
    schedule = DiscreteVPSchedule(beta_schedule, **BETAS[beta_schedule])
    net = _eps_net(schedule)
    scheduler.set_timesteps(steps)
    x = noise(16, 4, seed=7)
    ours_x, theirs = x.clone(), []
    for i, t in enumerate(scheduler.timesteps):
        kw = dict(step_kwargs or {}) if noises is None else {"variance_noise": noises[i], **(step_kwargs or {})}
        x = scheduler.step(net(x, int(t)), t, x, **kw).prev_sample
        theirs.append(x)
    sigma_min = getattr(scheduler.config, "final_sigmas_type", "zero") == "sigma_min"
    grid = [float(t) for t in scheduler.timesteps] + [0.0 if sigma_min else schedule.t_end]
    if noises is None:
        ours: list[torch.Tensor] = []
        process = ContinuousProcess(schedule, solver, timesteps=grid)
        decode(NetworkModel(net, schedule, "eps"), process, ours_x, steps=steps, callback=lambda i, s, p: ours.append(s.x))
    else:  # stochastic solvers: call the pure step function with diffusers' noise
        ours, hist, xs = [], None, ours_x
        model = NetworkModel(net, schedule, "eps")
        ts = torch.tensor(grid, dtype=torch.float64)
        for i in range(steps):
            state = State(x=xs, t=torch.full((16,), grid[i], dtype=torch.float64), done=torch.zeros(16, dtype=torch.bool))
            xs, hist = solver.step(xs, model(state), StepInfo.make(schedule, ts, i), hist, noises[i])
            ours.append(xs)
    return [float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True)]


@pytest.mark.parametrize("steps", [5, 12, 20])
@pytest.mark.parametrize("beta_schedule", list(BETAS))
def test_ddim(steps, beta_schedule):
    sched = DDIMScheduler(beta_schedule=beta_schedule, clip_sample=False, **BETAS[beta_schedule])
    assert max(_compare(sched, DDIM(), steps, beta_schedule)) < TOL


def test_ddim_eta():
    noises = [noise(16, 4, seed=100 + i) for i in range(10)]
    sched = DDIMScheduler(clip_sample=False)
    assert max(_compare(sched, DDIM(eta=0.6), 10, "linear", noises, {"eta": 0.6})) < TOL


@pytest.mark.parametrize("steps", [5, 12, 20])
@pytest.mark.parametrize(
    ("kwargs", "solver"),
    [
        ({}, DPMSolverPP(2)),
        ({"solver_type": "heun"}, DPMSolverPP(2, "heun")),
        ({"solver_order": 3}, DPMSolverPP(3, third_order="dpmsolver")),
        ({"solver_order": 1}, DPMSolverPP(1)),
        ({"euler_at_final": True}, DPMSolverPP(2, euler_at_final=True)),
        (
            {"solver_order": 3, "lower_order_final": False, "final_sigmas_type": "sigma_min"},
            DPMSolverPP(3, third_order="dpmsolver", lower_order_final=False),
        ),
    ],
)
def test_dpm_solver_multistep(steps, kwargs, solver):
    for beta_schedule in ("linear", "scaled_linear"):
        sched = DPMSolverMultistepScheduler(beta_schedule=beta_schedule, **BETAS[beta_schedule], **kwargs)
        assert max(_compare(sched, solver, steps, beta_schedule)) < TOL, (kwargs, beta_schedule)


@pytest.mark.parametrize("steps", [6, 16])
def test_sde_dpm_solver_pp(steps):
    noises = [noise(16, 4, seed=200 + i) for i in range(steps)]
    sched = DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")
    assert max(_compare(sched, DPMSolverPP(2, sde=True), steps, "linear", noises)) < TOL


@pytest.mark.parametrize("steps", [5, 12, 20])
@pytest.mark.parametrize(
    ("kwargs", "solver"),
    [
        ({}, UniPC(2, "bh2")),
        ({"solver_order": 3}, UniPC(3, "bh2")),
        ({"solver_order": 1}, UniPC(1, "bh2")),
        ({"disable_corrector": [0, 3]}, UniPC(2, "bh2", disable_corrector=(0, 3))),
        (
            {"lower_order_final": False, "solver_order": 3, "final_sigmas_type": "sigma_min"},
            UniPC(3, "bh2", lower_order_final=False),
        ),
    ],
)
def test_unipc(steps, kwargs, solver):
    for beta_schedule in ("linear", "scaled_linear"):
        sched = UniPCMultistepScheduler(beta_schedule=beta_schedule, **BETAS[beta_schedule], **kwargs)
        diffs = _compare(sched, solver, steps, beta_schedule)
        assert max(diffs) < TOL, (kwargs, beta_schedule, diffs)


def test_unipc_bh1_matches_until_diffusers_last_step_nan():
    """bh1 has B(h) = -h, infinite on the step onto data: diffusers returns NaN there (inf * 0); we return x0."""
    sched = UniPCMultistepScheduler(solver_type="bh1")
    diffs = _compare(sched, UniPC(2, "bh1"), 10, "linear")
    assert max(diffs[:-1]) < TOL
    assert math.isnan(diffs[-1])
