"""Time grids for sampling: uniform time, uniform log-SNR, Karras sigmas, or user-given timesteps.

A grid is a float64 tensor ``(steps + 1,)`` of strictly decreasing times that starts at the
noisiest time and (for the built-in spacings) ends on ``schedule.t_end`` (clean data, ``sigma = 0``):
the last step of every solver then maps to the data, as in diffusers' ``final_sigmas_type="zero"``.

- ``"time"``: ``linspace(t_max, 0, steps + 1)`` with the last point replaced by ``t_end``
  (diffusers' ``timestep_spacing="linspace"`` without rounding; DDIM, arXiv 2010.02502).
- ``"logsnr"``: ``steps`` points uniform in ``lambda`` from ``t_max`` to ``t_min``, then ``t_end``
  (DPM-Solver's ``skip_type="logSNR"``, arXiv 2206.00927).
- ``"karras"``: ``steps`` points with ``sigma/alpha`` spaced as in Karras et al. (arXiv 2206.00364,
  ``rho = 7``) from ``t_max`` to ``t_min``, then ``t_end``.
- ``"logsnr_trunc"``: ``t_max``, then ``steps - 1`` points uniform in ``lambda`` from
  ``max(lambda(t_max), lambda_floor)`` (default -4) to ``t_min``, then ``t_end``. Below
  ``lambda = -4`` (``alpha < 0.02``) the data prediction of a model hardly changes the sample, and
  a schedule that reaches much lower (diffusers' cosine betas capped at 0.999 reach -9.9) would
  otherwise spend a third of a short grid there; the first step jumps over that range instead.
  Measured on the trained Fashion-MNIST models in ``docs/perf/solvers.md``.
- user-given: any strictly decreasing sequence inside the schedule's range; it may end on
  ``t_end`` or at an intermediate time (then the result is the state at that time).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from decoding.solvers.schedules import VPSchedule

SPACINGS = ("time", "logsnr", "karras", "logsnr_trunc")
LAMBDA_FLOOR = -4.0


def make_timesteps(
    schedule: VPSchedule, steps: int, spacing: str = "logsnr", rho: float = 7.0, lambda_floor: float = LAMBDA_FLOOR
) -> Tensor:
    """The grid of ``steps + 1`` times for ``spacing`` (see the module docstring). Float64 ``(steps + 1,)``."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if spacing == "time":
        ts = torch.linspace(schedule.t_max, 0.0, steps + 1, dtype=torch.float64)
        ts[-1] = schedule.t_end
        return ts
    lo, hi = float(schedule.lambda_(schedule.t_max)), float(schedule.lambda_(schedule.t_min))
    if spacing == "logsnr_trunc" and lo < lambda_floor < hi and steps > 2:
        lams = torch.linspace(lambda_floor, hi, steps - 1, dtype=torch.float64)
        inner = torch.cat([torch.tensor([schedule.t_max], dtype=torch.float64), schedule.t_of_lambda(lams)])
    elif spacing in ("logsnr", "logsnr_trunc"):
        lams = torch.linspace(lo, hi, steps, dtype=torch.float64)
        inner = schedule.t_of_lambda(lams)
    elif spacing == "karras":
        if rho <= 0:
            raise ValueError(f"rho must be positive, got {rho}")
        s_max = float(torch.exp(-schedule.lambda_(schedule.t_max)))
        s_min = float(torch.exp(-schedule.lambda_(schedule.t_min)))
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        sig = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        inner = schedule.t_of_lambda(-torch.log(sig))
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {SPACINGS} or pass timesteps")
    inner[0] = schedule.t_max
    if steps > 1:
        inner[-1] = schedule.t_min
    return torch.cat([inner, torch.tensor([schedule.t_end], dtype=torch.float64)])


def validate_timesteps(schedule: VPSchedule, timesteps: Sequence[float] | Tensor) -> Tensor:
    """Check user-given timesteps and return them as float64 ``(n,)``.

    Raises:
        ValueError: fewer than 2 entries, not 1-D, not finite, not strictly decreasing, outside
            the schedule's range, or ``t_end`` anywhere but last.
    """
    ts = torch.as_tensor(timesteps, dtype=torch.float64).detach().cpu()
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(f"timesteps must be a 1-D sequence of at least 2 times, got shape {tuple(ts.shape)}")
    if not bool(torch.isfinite(ts).all()):
        raise ValueError("timesteps must be finite")
    is_end = ts == schedule.t_end
    if bool(is_end[:-1].any()):
        raise ValueError(f"the data time t_end={schedule.t_end} may only be the last timestep")
    inner = ts[~is_end]
    lam = schedule.lambda_(inner)  # raises for times outside the schedule's range
    if bool((lam[1:] <= lam[:-1]).any()) or (bool(is_end[-1]) and ts.numel() < 2):
        raise ValueError(
            f"timesteps must be strictly decreasing in noise (from t_max={schedule.t_max} towards "
            f"t_end={schedule.t_end}), got {ts.tolist()[:12]}"
        )
    return ts


def default_spacing(solver: object) -> str:
    """The time grid ``solver`` works best on (its ``default_spacing``; ``"logsnr"`` when it has none).

    The solvers' defaults were chosen by measurement on the trained Fashion-MNIST models (cosine
    schedule, see ``docs/perf/solvers.md``); callers that let the user leave the grid open
    (``spacing=None``) should take this one.
    """
    spacing = getattr(solver, "default_spacing", "logsnr")
    if spacing not in SPACINGS:
        raise ValueError(f"{type(solver).__name__}.default_spacing is {spacing!r}; expected one of {SPACINGS}")
    return spacing
