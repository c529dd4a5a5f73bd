"""Empirical model statistics (EMS) for DPM-Solver-v3 (Zheng et al., arXiv 2310.13268): compute, save, load.

DPM-Solver-v3 rewrites the PF-ODE with three per-dimension statistics on a grid of ``lambda``:

- ``l_lambda``: the diagonal of ``E[sigma * d eps / d x]`` (minimises the Jacobian of
  ``f = (sigma eps - l x) / alpha``, the "linear part" the solver integrates exactly);
- ``s_lambda, b_lambda``: the least-squares fit ``df/dlambda ≈ s f + b`` along ODE trajectories.

:func:`compute_ems` estimates them on a model: trajectories from ``x_T ~ N(0, I)`` are integrated
on the statistics grid (uniform in ``lambda``) with third-order DPM-Solver++; the Jacobian diagonal
comes from central finite differences along Rademacher probes (Hutchinson's estimator, the same
probes at every grid point so the estimate is smooth in ``lambda``) or, for small dimensions,
exactly along the basis vectors; ``df/dlambda`` from central differences along the grid.
:class:`EMS` saves them as safetensors (``EMS.save``; :func:`ems_path` puts the file next to a
model) with the schedule key, sample shape and model name in the metadata, which the solver checks.
With ``l = 1, s = b = 0`` (:meth:`EMS.degenerate`) DPM-Solver-v3 is DPM-Solver++.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from decoding.core.protocols import Model
from decoding.core.types import Prediction, State
from decoding.data.weights import load_tensors, save_tensors
from decoding.solvers.base import StepInfo
from decoding.solvers.dpm_solver_pp import DPMSolverPP
from decoding.solvers.parameterization import data_prediction
from decoding.solvers.schedules import VPSchedule

EMS_FILENAME = "dpm_solver_v3_ems.safetensors"


@dataclass(frozen=True, eq=False)
class EMS:
    """Statistics on an increasing ``lambda`` grid.

    Attributes:
        lambdas: float64 ``(K + 1,)`` increasing (from the noisiest time to the least noisy).
        l, s, b: float64 ``(K + 1, *shape)``.
        schedule_key: :attr:`VPSchedule.key` of the schedule they were computed under.
        model: a name for the model they belong to.
        info: free-form provenance (samples, probes, ...).
    """

    lambdas: Tensor
    l: Tensor  # noqa: E741 - the paper's name
    s: Tensor
    b: Tensor
    schedule_key: str
    model: str = ""
    info: str = ""

    def __post_init__(self) -> None:
        k1 = self.lambdas.numel()
        if self.lambdas.dim() != 1 or k1 < 2 or bool((self.lambdas[1:] <= self.lambdas[:-1]).any()):
            raise ValueError("EMS lambdas must be a strictly increasing 1-D grid of at least 2 points")
        for name in ("l", "s", "b"):
            v = getattr(self, name)
            if v.shape[0] != k1 or v.shape != self.l.shape:
                raise ValueError(f"EMS {name} has shape {tuple(v.shape)}, expected ({k1}, *shape) like l")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(self.l.shape[1:])

    @classmethod
    def degenerate(cls, schedule: VPSchedule, shape: tuple[int, ...], knots: int = 2, model: str = "") -> EMS:
        """``l = 1, s = b = 0`` over the schedule's whole range: DPM-Solver-v3 then equals DPM-Solver++."""
        lo, hi = float(schedule.lambda_(schedule.t_max)), float(schedule.lambda_(schedule.t_min))
        lams = torch.linspace(lo, hi, knots, dtype=torch.float64)
        ones = torch.ones(knots, *shape, dtype=torch.float64)
        return cls(lams, ones, torch.zeros_like(ones), torch.zeros_like(ones), schedule.key, model, "degenerate")

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (tensors ``lambdas, l, s, b``; metadata schedule/model/info/shape)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: getattr(self, k).contiguous() for k in ("lambdas", "l", "s", "b")}
        meta = {"schedule": self.schedule_key, "model": self.model, "info": self.info, "shape": json.dumps(self.shape)}
        save_tensors(tensors, path, meta)  # atomic: no half-written file
        return path

    @classmethod
    def load(cls, path: str | Path) -> EMS:
        path = Path(path)
        if path.is_dir():
            path = path / EMS_FILENAME
        if not path.is_file():
            raise ValueError(f"no DPM-Solver-v3 statistics at {path}; compute them with decoding.solvers.ems.compute_ems")
        tensors, meta = load_tensors(path)
        return cls(
            tensors["lambdas"], tensors["l"], tensors["s"], tensors["b"],
            meta.get("schedule", ""), meta.get("model", ""), meta.get("info", ""),
        )


def ems_path(model_dir: str | Path) -> Path:
    """Where a model's statistics live: ``<model_dir>/dpm_solver_v3_ems.safetensors``."""
    return Path(model_dir) / EMS_FILENAME


def solver_state(x: Tensor, t: float, schedule: VPSchedule) -> State:
    """A loop :class:`State` of ``x`` ``(B, ...)`` at time ``t`` for one model call outside the loop."""
    b = x.shape[0]
    return State(
        x=x,
        t=torch.full((b,), t, dtype=torch.float64, device=x.device),
        done=torch.zeros(b, dtype=torch.bool, device=x.device),
        memory={"schedule": schedule},
    )


def _n_of(model: Model, x: Tensor, t: float, alpha: float, sigma: float, schedule: VPSchedule) -> tuple[Tensor, Tensor]:
    """``(N, x0)`` with ``N = sigma * eps = x - alpha * x0`` at ``x``."""
    pred = model(solver_state(x, t, schedule))
    x0 = data_prediction(pred, x, alpha, sigma)
    return x - alpha * x0, x0


@torch.no_grad()
def compute_ems(
    model: Model,
    schedule: VPSchedule,
    shape: tuple[int, ...],
    n_samples: int = 256,
    knots: int = 200,
    probes: int = 4,
    exact_jacobian: bool = False,
    batch_size: int = 256,
    fd_eps: float = 1e-3,
    generator: torch.Generator | None = None,
    model_name: str = "",
    device: torch.device | str = "cpu",
    progress: bool = False,
    noise: Tensor | None = None,
    ridge: float = 1e-3,
) -> EMS:
    """Estimate ``l, s, b`` on ``knots + 1`` points uniform in ``lambda`` over ``[t_max, t_min]``.

    Args:
        model: ``state -> Prediction``; called in float64.
        shape: shape of one sample, e.g. ``(1, 28, 28)``.
        n_samples: ODE trajectories (from ``x_T ~ N(0, I)``).
        knots: grid intervals ``K`` (the trajectory solver takes ``K`` steps).
        probes: Rademacher probes per sample for the Jacobian diagonal (ignored if ``exact_jacobian``).
        exact_jacobian: probe along every basis vector (exact diagonal; ``D`` probes, small ``D`` only).
        fd_eps: finite-difference step for Jacobian-vector products (relative to 1).
        noise: the starting points ``(n_samples, *shape)`` (default: drawn from ``generator``).
        ridge: the regression for ``s`` divides by ``Var(f) + ridge * median_d Var(f)``: dimensions
            where ``f`` barely varies (e.g. pixels that are background in every image) get ``s ≈ 0``
            instead of a ratio of two tiny numbers, which would make ``e^{int s}`` overflow.

    Returns:
        :class:`EMS` with ``schedule_key`` and ``model`` set.
    """
    if knots < 2 or n_samples < 2:
        raise ValueError("compute_ems needs knots >= 2 and n_samples >= 2")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    lo, hi = float(schedule.lambda_(schedule.t_max)), float(schedule.lambda_(schedule.t_min))
    lams = torch.linspace(lo, hi, knots + 1, dtype=torch.float64)
    ts = schedule.t_of_lambda(lams)
    ts[0], ts[-1] = schedule.t_max, schedule.t_min
    alphas, sigmas = schedule.alpha(ts).tolist(), schedule.sigma(ts).tolist()
    dim = 1
    for v in shape:
        dim *= int(v)
    if noise is None:
        noise = torch.randn(n_samples, *shape, generator=g, dtype=torch.float64)
    elif tuple(noise.shape) != (n_samples, *shape):
        raise ValueError(f"noise must have shape {(n_samples, *shape)}, got {tuple(noise.shape)}")
    noise = noise.to(device, torch.float64)
    if exact_jacobian:
        basis = torch.eye(dim, dtype=torch.float64, device=device).reshape(dim, *shape)
    rademacher = (torch.randint(0, 2, (n_samples, max(probes, 1), *shape), generator=g) * 2 - 1).to(device, torch.float64)
    solver = DPMSolverPP(order=3, third_order="taylor", lower_order_final=False)
    bar = tqdm(total=2 * (n_samples + batch_size - 1) // batch_size * (knots + 1), disable=not progress, desc="EMS")

    def trajectory(x: Tensor):
        """Yield ``(j, x_j, N_j)`` along the grid for one batch."""
        hist = None
        for j in range(knots + 1):
            n_j, x0 = _n_of(model, x, float(ts[j]), alphas[j], sigmas[j], schedule)
            yield j, x, n_j
            bar.update(1)
            if j < knots:
                info = StepInfo.make(schedule, ts, j)
                x, hist = solver.step(x, Prediction(x0=x0), info, hist)

    # pass 1: l = E[diag(sigma d eps / dx)] = E[diag(dN/dx)] - 0 (N = x - alpha x0, so dN/dx = I - alpha dx0/dx)
    l_sum = torch.zeros(knots + 1, *shape, dtype=torch.float64, device=device)
    count = 0
    for lo_i in range(0, n_samples, batch_size):
        xb = noise[lo_i : lo_i + batch_size]
        vb = basis if exact_jacobian else None
        for j, x, _ in trajectory(xb):
            est = torch.zeros_like(x)
            vecs = [vb[d].expand_as(x) for d in range(dim)] if exact_jacobian else [
                rademacher[lo_i : lo_i + batch_size, p] for p in range(probes)
            ]
            for v in vecs:
                n_plus, _ = _n_of(model, x + fd_eps * v, float(ts[j]), alphas[j], sigmas[j], schedule)
                n_minus, _ = _n_of(model, x - fd_eps * v, float(ts[j]), alphas[j], sigmas[j], schedule)
                est = est + v * (n_plus - n_minus) / (2 * fd_eps)
            if not exact_jacobian:
                est = est / len(vecs)
            l_sum[j] += est.sum(0)
        count += xb.shape[0]
    l_stat = l_sum / count

    # pass 2: f = (N - l x) / alpha and f' = df/dlambda (central differences) -> regression f' = s f + b
    dl = float(lams[1] - lams[0])
    sums = {k: torch.zeros(knots + 1, *shape, dtype=torch.float64, device=device) for k in ("f", "d", "ff", "fd")}
    def accumulate(j: int, f: Tensor, d: Tensor) -> None:
        sums["f"][j] += f.sum(0)
        sums["d"][j] += d.sum(0)
        sums["ff"][j] += (f * f).sum(0)
        sums["fd"][j] += (f * d).sum(0)

    for lo_i in range(0, n_samples, batch_size):
        xb = noise[lo_i : lo_i + batch_size]
        window: list[Tensor] = []  # f_{j-2}, f_{j-1}, f_j
        for j, x, n_j in trajectory(xb):
            window = (window + [(n_j - l_stat[j] * x) / alphas[j]])[-3:]
            if j == 2:  # one-sided second-order difference at the first knot
                accumulate(0, window[0], (-3 * window[0] + 4 * window[1] - window[2]) / (2 * dl))
            if j >= 2:
                accumulate(j - 1, window[1], (window[2] - window[0]) / (2 * dl))
            if j == knots:
                accumulate(j, window[2], (3 * window[2] - 4 * window[1] + window[0]) / (2 * dl))
    bar.close()
    mf, md = sums["f"] / count, sums["d"] / count
    var = sums["ff"] / count - mf * mf
    cov = sums["fd"] / count - mf * md
    var = var.clamp_min(0.0)
    flat = var.reshape(knots + 1, -1)
    reg = ridge * flat.median(dim=1).values.reshape(knots + 1, *([1] * len(shape)))
    tiny = 1e-10 * (1.0 + mf * mf)
    s_stat = torch.where(var + reg > tiny, cov / (var + reg).clamp_min(1e-300), torch.zeros_like(var))
    b_stat = md - s_stat * mf
    info = json.dumps({"n_samples": n_samples, "knots": knots, "probes": "exact" if exact_jacobian else probes})
    return EMS(lams, l_stat.cpu(), s_stat.cpu(), b_stat.cpu(), schedule.key, model_name, info)
