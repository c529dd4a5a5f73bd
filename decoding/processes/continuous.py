"""Continuous diffusion as a decode-loop process: latents ``x`` walk a VP time grid with a solver.

``init`` draws ``x_T ~ N(0, I)`` (or takes given noise), ``schedule(steps)`` returns the time grid
(:mod:`decoding.solvers.timesteps`), and ``step`` calls the solver's pure step function with its
explicit history, which lives in ``state.memory["solver"]`` next to the grid (``"grid"``, put there
by the decode loop) and the noise schedule (``"schedule"``, read by closed-form models and checked
by network wrappers). The process object itself keeps nothing between runs.
``State.t`` holds the current time of every row; ``State.x`` the latents ``(B, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.solvers.base import Solver, StepInfo, check_steps
from decoding.solvers.schedules import VPSchedule
from decoding.solvers.timesteps import make_timesteps, validate_timesteps

GRID_INFO = "grid_info"  # state.memory key: the last step's StepInfo (its grid's schedule values, reused)


@dataclass
class ContinuousProcess:
    """The continuous-diffusion process.

    Args:
        noise_schedule: the VP schedule (must match the model's).
        solver: any :class:`~decoding.solvers.base.Solver` (DDIM, DPM-Solver++, UniPC, ...).
        spacing: ``"logsnr"``, ``"time"`` or ``"karras"`` (ignored when ``timesteps`` is given).
        timesteps: user-given grid (``steps + 1`` strictly decreasing times); validated.
        dtype: dtype of the latents drawn by ``init`` from a shape.
    """

    noise_schedule: VPSchedule
    solver: Solver
    spacing: str = "logsnr"
    timesteps: Sequence[float] | Tensor | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.timesteps is not None:
            self.timesteps = validate_timesteps(self.noise_schedule, self.timesteps)

    def init(self, prompt: Any, generator: torch.Generator) -> State:
        """``prompt``: a shape ``(B, ...)`` (noise is drawn from ``generator``) or the noise tensor itself."""
        if isinstance(prompt, Tensor):
            if prompt.dim() < 2 or not prompt.is_floating_point():
                raise ValueError(f"initial noise must be a float tensor (B, ...), got {tuple(prompt.shape)}")
            x = prompt
        else:
            try:
                shape = tuple(int(v) for v in prompt)
            except TypeError:
                raise ValueError(f"prompt must be a shape (B, ...) or a noise tensor, got {type(prompt).__name__}") from None
            if len(shape) < 2 or min(shape) < 1:
                raise ValueError(f"shape must be (B, ...) with positive sizes, got {shape}")
            x = torch.randn(shape, generator=generator, dtype=self.dtype, device=generator.device)
        b = x.shape[0]
        t0 = float(self.timesteps[0]) if self.timesteps is not None else self.noise_schedule.t_max
        return State(
            x=x,
            t=torch.full((b,), t0, dtype=torch.float64, device=x.device),
            done=torch.zeros(b, dtype=torch.bool),  # CPU: set by the grid, never by data (no device sync)
            memory={"schedule": self.noise_schedule},
        )

    def schedule(self, steps: int) -> Tensor:
        """The ``steps + 1`` times; raises if the solver needs more steps or ``timesteps`` has another length."""
        check_steps(self.solver, steps)
        if self.timesteps is not None:
            if self.timesteps.numel() != steps + 1:
                raise ValueError(f"{self.timesteps.numel()} timesteps given but steps={steps} needs {steps + 1}")
            grid = self.timesteps.clone()
        else:
            grid = make_timesteps(self.noise_schedule, steps, self.spacing)
        return grid

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """One solver step from ``state.t`` to ``t_next``."""
        grid = state.memory.get("grid")
        if grid is None:
            raise ValueError(
                "the state has no time grid: run the process through decode(), or put schedule(steps) "
                "in state.memory['grid'] (the solver needs the whole grid)"
            )
        i = state.step
        if i + 1 >= grid.numel() or abs(float(grid[i + 1]) - float(t_next)) > 1e-9 * max(1.0, abs(float(t_next))):
            raise ValueError(f"t_next={float(t_next)} is not step {i + 1} of the grid this run was scheduled with")
        info = self._step_info(state, grid, i)
        noise = None
        if self.solver.stochastic and not info.to_data:
            noise = torch.randn(state.x.shape, generator=generator, dtype=state.x.dtype, device=state.x.device)
        x, history = self.solver.step(state.x, pred, info, state.memory.get("solver"), noise)
        last = i + 1 == grid.numel() - 1
        b = state.batch_size
        return State(
            x=x.to(state.x.dtype),
            t=torch.full((b,), float(t_next), dtype=torch.float64, device=state.x.device),
            done=torch.full((b,), last, dtype=torch.bool),
            step=i + 1,
            memory={**state.memory, **pred.memory, "solver": history, "grid": grid, GRID_INFO: info},
        )

    def _step_info(self, state: State, grid: Tensor, i: int) -> StepInfo:
        """:meth:`StepInfo.make` for step ``i``, reusing the previous step's schedule values on the same
        grid (computing them costs ~0.5 ms of host time per step, as much as a small batch's network call)."""
        last = state.memory.get(GRID_INFO)
        if isinstance(last, StepInfo) and last.schedule is self.noise_schedule and last.source is grid:
            return replace(last, i=int(i))
        return StepInfo.make(self.noise_schedule, grid, i)


def state_times(state: State) -> Tensor:
    """``(B,)`` float64 CPU times of a continuous state, without a device sync when possible.

    The process keeps its grid (CPU) in ``state.memory["grid"]`` and moves every row to
    ``grid[state.step]``; reading the grid avoids copying ``state.t`` from the GPU at every step
    (a sync that stalls the launch of the next network call).
    """
    b = state.batch_size
    grid = state.memory.get("grid")
    if isinstance(grid, Tensor) and grid.device.type == "cpu" and state.step < grid.numel():
        return grid[state.step].to(torch.float64).expand(b)
    t = state.t.to(torch.float64).cpu()
    return t.expand(b) if t.dim() == 0 else t


def state_coefficients(state: State, schedule: VPSchedule) -> tuple[Tensor | float, Tensor | float]:
    """``(alpha, sigma)`` of every row of ``state``: Python floats when all rows share one time, else ``(B,)``."""
    t = state_times(state)
    if bool((t == t[0]).all()):
        return float(schedule.alpha(t[:1])), float(schedule.sigma(t[:1]))
    dev = state.x.device
    return schedule.alpha(t).to(dev, torch.float32), schedule.sigma(t).to(dev, torch.float32)
