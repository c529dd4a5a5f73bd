"""``sample``: draw from a continuous diffusion model with a named solver, through the one decode loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from decoding.core.loop import Callback, decode
from decoding.core.protocols import Model
from decoding.core.types import Result
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.base import Solver
from decoding.solvers.registry import get_solver
from decoding.solvers.schedules import DiscreteVPSchedule, VPSchedule


def sample(
    model: Model,
    shape: Sequence[int] | Tensor,
    solver: str | Solver = "dpmpp_2m",
    steps: int = 10,
    schedule: VPSchedule | None = None,
    generator: torch.Generator | None = None,
    *,
    spacing: str = "logsnr",
    timesteps: Sequence[float] | Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    **solver_options: Any,
) -> Result:
    """Sample ``shape`` (``(B, ...)``, or the starting noise itself) in ``steps`` model calls.

    Args:
        model: ``state -> Prediction`` with ``x0`` and/or ``eps`` (a closed-form denoiser, a
            :class:`~decoding.solvers.parameterization.NetworkModel`, a guidance wrapper, ...).
        solver: a name from :data:`decoding.solvers.registry.SOLVERS` or a solver object.
        steps: number of steps (= NFE for every solver here).
        schedule: the model's VP schedule (default: diffusers' linear DDPM betas, 1000 steps).
        generator: random source (noise and stochastic solvers); ``seed`` makes one when absent.
        spacing: ``"logsnr"``, ``"time"`` or ``"karras"``; ``timesteps`` overrides it.
        solver_options: passed to the solver's constructor when ``solver`` is a name
            (``dc_solver`` gets ``steps`` too, for ratio prediction).

    Returns:
        :class:`~decoding.core.types.Result`; ``result.x`` holds the samples.
    """
    sched = schedule if schedule is not None else DiscreteVPSchedule()
    if isinstance(solver, str):
        if solver == "dc_solver" and "cpr" in solver_options:
            solver_options.setdefault("steps", steps)
        solver = get_solver(solver, **solver_options)
    elif solver_options:
        raise ValueError(f"solver options {sorted(solver_options)} only apply when the solver is given by name")
    process = ContinuousProcess(sched, solver, spacing=spacing, timesteps=timesteps, dtype=dtype)
    prompt = shape if isinstance(shape, Tensor) else tuple(int(v) for v in shape)
    return decode(
        model, process, prompt, steps=steps, generator=generator, seed=seed, callback=callback, progress=progress
    )
