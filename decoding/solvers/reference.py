"""A reference solution of the probability-flow ODE: classical RK4 with many small steps.

Independent of the solvers under test. With ``y = x / sigma`` the PF-ODE of a VP diffusion reads
``dy/dlambda = e^lambda x0(sigma y, lambda)`` (DPM-Solver++, arXiv 2211.01095, eq. 8), a smooth
equation in ``lambda`` that RK4 integrates to high accuracy on a fine uniform ``lambda`` grid.
A final time with ``sigma = 0`` is reached as every solver reaches it: by the data prediction at
the last positive time (``schedule.t_min`` unless the grid has a later positive time).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from decoding.core.protocols import Model
from decoding.core.types import State
from decoding.solvers.parameterization import data_prediction
from decoding.solvers.schedules import VPSchedule


def _x0(model: Model, schedule: VPSchedule, x: Tensor, lam: float) -> Tensor:
    t = float(schedule.t_of_lambda(torch.tensor(lam, dtype=torch.float64)))
    b = x.shape[0]
    state = State(
        x=x,
        t=torch.full((b,), t, dtype=torch.float64, device=x.device),
        done=torch.zeros(b, dtype=torch.bool, device=x.device),
        memory={"schedule": schedule},
    )
    alpha = float(schedule.alpha(t))
    sigma = float(schedule.sigma(t))
    return data_prediction(model(state), x, alpha, sigma)


def reference_solve(
    model: Model,
    schedule: VPSchedule,
    x: Tensor,
    times: Tensor | list[float],
    steps: int = 1000,
    progress: bool = False,
) -> list[Tensor]:
    """Integrate from ``x`` at ``times[0]`` and return the states at every entry of ``times``.

    Args:
        model: ``state -> Prediction`` (x0 or eps).
        schedule: the VP schedule of ``times``.
        x: ``(B, ...)`` at ``times[0]``.
        times: strictly decreasing in noise; may end at ``schedule.t_end``.
        steps: total RK4 steps (4 model calls each), spread uniformly in ``lambda`` over the range.

    Returns:
        ``[x(times[0]), x(times[1]), ...]`` (the first is ``x`` itself).
    """
    ts = torch.as_tensor(times, dtype=torch.float64)
    lams = schedule.lambda_(ts).tolist()
    end_at_data = math.isinf(lams[-1])
    lam_stop = float(schedule.lambda_(schedule.t_min)) if end_at_data else lams[-1]
    if end_at_data and len(lams) > 1 and not math.isinf(lams[-2]):
        lam_stop = max(lam_stop, lams[-2])
    total = max(lam_stop - lams[0], 1e-12)
    out = [x]
    y = x / float(schedule.sigma(ts[0]))
    lam = lams[0]
    bar = tqdm(total=steps, disable=not progress, desc="reference", leave=False)

    def rhs(y_: Tensor, lam_: float) -> Tensor:
        sigma = math.exp(-0.5 * math.log1p(math.exp(2 * lam_))) if lam_ < 30 else math.exp(-lam_)
        return math.exp(lam_) * _x0(model, schedule, sigma * y_, lam_)

    for k in range(1, len(lams)):
        target = lam_stop if math.isinf(lams[k]) else lams[k]
        n = max(1, math.ceil(steps * (target - lam) / total)) if target > lam else 0
        h = (target - lam) / n if n else 0.0
        for _ in range(n):
            k1 = rhs(y, lam)
            k2 = rhs(y + 0.5 * h * k1, lam + 0.5 * h)
            k3 = rhs(y + 0.5 * h * k2, lam + 0.5 * h)
            k4 = rhs(y + h * k3, lam + h)
            y = y + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
            lam += h
            bar.update(1)
        sigma_now = math.exp(-0.5 * math.log1p(math.exp(2 * lam)))
        x_now = sigma_now * y
        if math.isinf(lams[k]):
            out.append(_x0(model, schedule, x_now, lam))
        else:
            out.append(x_now)
    bar.close()
    return out
