"""DC-Solver's ratio search (arXiv 2409.03755, section 3.3): one compensation ratio per step, greedily.

Step by step along the grid, the ratio ``rho_i`` is chosen so that the state the solver reaches at
the next time (predicted, then corrected by UniC after one model call, as the solver does it) is
closest in mean squared error to a reference trajectory from the same starting noise (10
datapoints in the paper); the run then continues with that ratio. The paper's code minimises this
loss by gradient descent started at ``rho = 1`` (AdamW, 40 iterations), i.e. it settles in the
basin of the loss that contains 1. :func:`search_dc_ratios` does the same without gradients:
from ``start`` it walks downhill over candidates spaced ``step`` apart inside ``[lo, hi]``, then
refines the minimum by golden-section search. ``reg`` adds ``reg * loss(1) * (rho - 1)^2``, a
pull towards plain UniPC that is measured in the same units as the loss.

An unrestricted global search over ``[0, 2]`` with 10 datapoints ran into the bound 0 at late steps
on our trained models (a ratio of 0 hands the previous prediction to the predictor); the local
search does not, see ``docs/perf/solvers.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from decoding.core.protocols import Model
from decoding.solvers.base import StepInfo
from decoding.solvers.dc_solver import DCSolver
from decoding.solvers.ems import solver_state
from decoding.solvers.parameterization import data_prediction
from decoding.solvers.schedules import VPSchedule


def golden_section(fn: Callable[[float], float], lo: float, hi: float, iters: int) -> tuple[float, float]:
    """``(argmin, min)`` of ``fn`` on ``[lo, hi]`` after ``iters`` golden-section reductions (unimodal ``fn``)."""
    phi = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - phi * (b - a), a + phi * (b - a)
    fc, fd = fn(c), fn(d)
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - phi * (b - a)
            fc = fn(c)
        else:
            a, c, fc = c, d, fd
            d = a + phi * (b - a)
            fd = fn(d)
    return (c, fc) if fc < fd else (d, fd)


def descend(fn: Callable[[float], float], start: float | None, step: float, lo: float, hi: float, refine: int) -> float:
    """The minimum of ``fn`` in the basin that contains ``start``, inside ``[lo, hi]``.

    Walks from ``start`` in steps of ``step`` while ``fn`` decreases, then refines between the
    neighbours of the lowest point by golden-section search (``refine`` reductions).
    ``start=None`` scans all of ``[lo, hi]`` in steps of ``step`` instead (a global search).
    """
    if step <= 0 or lo > hi or (start is not None and not lo <= start <= hi):
        raise ValueError(f"need lo <= start <= hi and step > 0, got lo={lo}, start={start}, hi={hi}, step={step}")
    if start is None:
        cands = torch.arange(lo, hi + step / 2, step, dtype=torch.float64).clamp(max=hi).tolist()
        best = min(cands, key=fn)
        f_best = fn(best)
    else:
        best, f_best = start, fn(start)
    for direction in (1.0, -1.0) if start is not None else ():
        moved = False
        while True:
            nxt = min(hi, max(lo, best + direction * step))
            if nxt == best:
                break
            f_nxt = fn(nxt)
            if f_nxt >= f_best:
                break
            best, f_best, moved = nxt, f_nxt, True
        if moved:
            break
    a, b = max(lo, best - step), min(hi, best + step)
    r, f_r = golden_section(fn, a, b, refine) if refine > 0 and b > a else (best, f_best)
    return r if f_r < f_best else best


def _run(model: Model, schedule: VPSchedule, solver: DCSolver, ts: Tensor, carry: tuple, i0: int,
         ratios: Sequence[float], stop: int | None = None) -> tuple:
    """Take steps ``i0 .. stop-1`` from ``carry = (x, history, prediction)`` at ``ts[i0]``; the carry at ``stop``.

    At the end of the grid the carry is ``(final sample, history, None)``.
    """
    n = ts.numel() - 1
    stop = n if stop is None else stop
    x, hist, pred = carry
    for i in range(i0, stop):
        x, hist = solver.step(x, pred, StepInfo.make(schedule, ts, i), hist, ratio=ratios[i])
        pred = model(solver_state(x, float(ts[i + 1]), schedule)) if i + 1 < n else None
    return x, hist, pred


def _searchable(solver: DCSolver, ts: Tensor, schedule: VPSchedule) -> list[int]:
    """Steps whose ratio is searched: from ``dc_order`` on, without the step onto data unless compensated."""
    n = ts.numel() - 1
    return [i for i in range(solver.dc_order, n) if solver.compensate_final or not StepInfo.make(schedule, ts, i).to_data]


@torch.no_grad()
def search_dc_ratios(
    model: Model,
    schedule: VPSchedule,
    solver: DCSolver,
    ts: Tensor,
    x_T: Tensor,
    reference: Sequence[Tensor],
    lo: float = 0.0,
    hi: float = 2.0,
    step: float = 0.1,
    refine: int = 10,
    start: float | None = 1.0,
    reg: float = 0.0,
    objective: str = "final",
    sweeps: int = 2,
) -> tuple[float, ...]:
    """Search the compensation ratio of every step against a reference solution.

    Args:
        model: ``state -> Prediction``.
        schedule, ts: the grid the ratios are for (``(N + 1,)`` times).
        solver: supplies order/variant/dc_order/compensate_final (its own ratios are ignored).
        x_T: ``(n, ...)`` starting noise of the datapoints (10 in the paper).
        reference: the reference states from ``x_T``: at every time of ``ts`` (``len == N + 1``,
            e.g. from :func:`~decoding.solvers.reference.reference_solve`) for ``"greedy"``; for
            ``"final"`` only the last entry (the reference sample) is used.
        lo, hi, step, refine, start: see :func:`descend` (``lo <= start <= hi``; ``None``: a global
            scan of ``[lo, hi]``, what this function did before the local search).
        reg: weight of the pull towards ``rho = 1`` (0: none).
        objective: ``"greedy"`` (the paper: step by step, the state at the next time) or
            ``"final"`` (coordinate descent on the mean squared error of the final samples, each
            ratio in turn with the others fixed, ``sweeps`` passes; never worse than UniPC on
            the datapoints, since all-ones is where it starts).

    Returns:
        ``N`` ratios: 1.0 for the first ``dc_order`` steps (nothing to interpolate) and, unless
        ``solver.compensate_final``, for the step onto ``sigma = 0``.
    """
    n = ts.numel() - 1
    if objective not in ("greedy", "final"):
        raise ValueError(f"objective must be 'greedy' or 'final', got {objective!r}")
    if objective == "greedy" and len(reference) != n + 1:
        raise ValueError(f"reference must hold the state at each of the {n + 1} grid times, got {len(reference)}")
    if reg < 0 or sweeps < 1:
        raise ValueError(f"need reg >= 0 and sweeps >= 1, got reg={reg}, sweeps={sweeps}")
    solver = DCSolver(None, solver.order, solver.variant, solver.corrector, solver.lower_order_final,
                      solver.dc_order, solver.compensate_final)
    carry0 = (x_T, None, model(solver_state(x_T, float(ts[0]), schedule)))
    if objective == "final":
        return _search_final(model, schedule, solver, ts, carry0, reference[-1], (lo, hi, step, refine, start, reg), sweeps)
    x, hist, pred = carry0
    ratios: list[float] = []
    for i in range(n):
        info = StepInfo.make(schedule, ts, i)
        best = 1.0
        if i >= solver.dc_order and (solver.compensate_final or not info.to_data):
            target = reference[i + 1]
            nxt_info = StepInfo.make(schedule, ts, i + 1) if i + 1 < n else None
            if nxt_info is not None and nxt_info.to_data and not solver.compensate_final:
                target = reference[i + 2]  # the next step returns the data prediction at the state reached here

            def loss(rho: float, x=x, hist=hist, pred=pred, info=info, target=target, nxt_info=nxt_info) -> float:
                x1, h1 = solver.step(x, pred, info, hist, ratio=rho)
                if nxt_info is not None and (solver.corrector or nxt_info.to_data):
                    m1 = model(solver_state(x1, float(nxt_info.ts[nxt_info.i]), schedule))
                    if nxt_info.to_data and not solver.compensate_final:
                        x1 = data_prediction(m1, x1, *nxt_info.s[:2])
                    else:
                        _, x1, _ = solver.base.begin(x1, m1, nxt_info, h1, keep=solver.dc_order + 1)
                return float(((x1 - target) ** 2).mean())

            best = descend(_penalised(loss, reg), start, step, lo, hi, refine)
        ratios.append(best)
        x, hist = solver.step(x, pred, info, hist, ratio=best)
        if i + 1 < n:
            pred = model(solver_state(x, float(ts[i + 1]), schedule))
    return tuple(ratios)


def _penalised(loss: Callable[[float], float], reg: float) -> Callable[[float], float]:
    """``loss`` memoised, plus ``reg * loss(1) * (rho - 1)^2``."""
    cache: dict[float, float] = {}

    def objective(rho: float) -> float:
        for r in (rho, 1.0) if reg > 0 else (rho,):
            if r not in cache:
                cache[r] = loss(r)
        return cache[rho] + (reg * cache[1.0] * (rho - 1.0) ** 2 if reg > 0 else 0.0)

    return objective


def _search_final(
    model: Model, schedule: VPSchedule, solver: DCSolver, ts: Tensor, carry0: tuple, target: Tensor,
    search: tuple, sweeps: int,
) -> tuple[float, ...]:
    """Coordinate descent of the final samples' mean squared error over the searchable ratios."""
    lo, hi, step, refine, start, reg = search
    n = ts.numel() - 1
    ratios = [1.0] * n
    steps = _searchable(solver, ts, schedule)
    for _ in range(sweeps):
        carry, at = carry0, 0
        for i in steps:
            carry, at = _run(model, schedule, solver, ts, carry, at, ratios, stop=i), i

            def loss(rho: float, i=i, carry=carry) -> float:
                trial = list(ratios)
                trial[i] = rho
                final = _run(model, schedule, solver, ts, carry, i, trial)[0]
                return float(((final - target) ** 2).mean())

            ratios[i] = descend(_penalised(loss, reg), ratios[i] if start is not None else None, step, lo, hi, refine)
    return tuple(ratios)
