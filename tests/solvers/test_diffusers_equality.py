"""Step-for-step equality with diffusers' schedulers (test-only peer) in float64.

The same closed-form eps-network and the same timesteps drive diffusers' ``step`` loop and our
decode loop (``timesteps = scheduler.timesteps + [data]``); every intermediate sample must agree.

Stock diffusers 0.42.1 is not a float64 peer: its schedulers keep ``alphas_cumprod`` and the
inference ``sigmas`` in float32 (``np.concatenate(...).astype(np.float32)`` in ``set_timesteps``),
so every step's alpha, sigma, lambda and h carry float32 rounding, and
``DPMSolverMultistepScheduler.step`` casts the sample itself to float32 ("upcast"). Those roundings
were the whole of the differences seen before (up to 4e-6 on this machine and 1.4e-5 on another for
UniPC-3 without lower-order final steps, where the order-3 solve ``R[:-1, :-1] rho = b`` on the last
step to sigma_min amplifies them; 1e-3 on "squaredcos_cap_v2", whose ``alphas_cumprod[999]`` is
~2e-9). :func:`float64_peer` runs the same diffusers code on the same float32 betas with the
schedule and the sample in float64; then every scheduler agrees with ours to ~1e-14 (2026-12-06).
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("diffusers")
import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm_module  # noqa: E402
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler  # noqa: E402

from decoding import decode  # noqa: E402
from decoding.core.types import State  # noqa: E402
from decoding.processes.continuous import ContinuousProcess  # noqa: E402
from decoding.solvers import DDIM, DiscreteVPSchedule, DPMSolverPP, StepInfo, UniPC  # noqa: E402
from decoding.solvers.parameterization import NetworkModel, bcast  # noqa: E402
from tests.solvers.problems import mixture, noise  # noqa: E402

# Both sides compute the same formulas in float64 from the same float32 betas, so only float64
# rounding differs. The largest amplification of a rounding is x0 = (x - sigma eps) / alpha at
# t = 999: 1 / alpha = 2.2e4 on "squaredcos_cap_v2" (156 on "linear"); with |x| <= ~5 and a unit
# rounding of 1.1e-16 that is ~1e-11 in x0, which enters the next state multiplied by alpha_t <= 1.
# 1e-10 bounds it; the largest difference measured is 2.7e-14 (UniPC-3, 5 steps).
TOL = 1e-10
BETAS = {
    "linear": {},
    "scaled_linear": {"beta_start": 0.00085, "beta_end": 0.012},
    "squaredcos_cap_v2": {},
}


class _Float32AsFloat64:
    """``torch`` as seen by diffusers' DPM-Solver module during ``step``: ``torch.float32`` is float64."""

    def __getattr__(self, name: str):
        return torch.float64 if name == "float32" else getattr(torch, name)


def float64_peer(scheduler):
    """Make a diffusers scheduler compute in float64 from its own (float32) betas.

    ``alphas_cumprod`` (and the tables derived from it) become float64; after ``set_timesteps``
    the inference ``sigmas`` are recomputed in float64 at the timesteps diffusers chose (checked to
    equal its float32 grid); DPM-Solver's float32 cast of the sample in ``step`` becomes a float64
    one. The formulas are diffusers' own.
    """
    ac = scheduler.alphas_cumprod.double()
    scheduler.alphas_cumprod = ac
    if hasattr(scheduler, "final_alpha_cumprod"):
        scheduler.final_alpha_cumprod = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float64)
    if hasattr(scheduler, "lambda_t"):
        scheduler.alpha_t, scheduler.sigma_t = ac.sqrt(), (1 - ac).sqrt()
        scheduler.lambda_t = scheduler.alpha_t.log() - scheduler.sigma_t.log()
    set_timesteps, step = scheduler.set_timesteps, scheduler.step

    def set_timesteps64(num_inference_steps: int, device=None) -> None:
        set_timesteps(num_inference_steps, device)
        if getattr(scheduler, "sigmas", None) is None:  # DDIM: indexes alphas_cumprod directly
            return
        full = ((1 - ac) / ac).sqrt()
        final = getattr(scheduler.config, "final_sigmas_type", "zero")
        last = full[:1] if final == "sigma_min" else torch.zeros(1, dtype=torch.float64)
        sigmas = torch.cat([full[scheduler.timesteps.long()], last])
        assert torch.allclose(sigmas.float(), scheduler.sigmas, rtol=1e-6, atol=0), "not diffusers' grid"
        scheduler.sigmas = sigmas

    def step64(*args, **kwargs):
        if not isinstance(scheduler, DPMSolverMultistepScheduler):
            return step(*args, **kwargs)
        dpm_module.torch = _Float32AsFloat64()
        try:
            return step(*args, **kwargs)
        finally:
            dpm_module.torch = torch

    scheduler.set_timesteps, scheduler.step = set_timesteps64, step64
    return scheduler


def _eps_net(schedule: DiscreteVPSchedule):
    data = mixture()

    def net(x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        tt = torch.full((x.shape[0],), float(t), dtype=torch.float64) if not torch.is_tensor(t) or t.dim() == 0 else t
        a, s = schedule.alpha(tt.double()), schedule.sigma(tt.double())
        x0 = data.denoise(x, a, s)
        return (x - bcast(a, x) * x0) / bcast(s, x)

    return net


def _compare(scheduler, solver, steps: int, beta_schedule: str, noises=None, step_kwargs=None) -> list[float]:
    scheduler = float64_peer(scheduler)
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
    for beta_schedule in BETAS:
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
    for beta_schedule in BETAS:
        sched = UniPCMultistepScheduler(beta_schedule=beta_schedule, **BETAS[beta_schedule], **kwargs)
        diffs = _compare(sched, solver, steps, beta_schedule)
        assert max(diffs) < TOL, (kwargs, beta_schedule, diffs)


def test_unipc_bh1_matches_until_diffusers_last_step_nan():
    """bh1 has B(h) = -h, infinite on the step onto data: diffusers returns NaN there (inf * 0); we return x0."""
    sched = UniPCMultistepScheduler(solver_type="bh1")
    diffs = _compare(sched, UniPC(2, "bh1"), 10, "linear")
    assert max(diffs[:-1]) < TOL
    assert math.isnan(diffs[-1])
