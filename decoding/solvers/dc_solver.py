"""DC-Solver (Zhao, Wang, Zhou & Lu, arXiv 2409.03755): dynamic compensation for a predictor-corrector solver.

UniPC evaluates the model at the *predicted* point but uses the prediction with the *corrected*
sample, a misalignment. DC-Solver replaces the newest data prediction ``m_i`` (after the
corrector) by the Lagrange interpolant of the last ``dc_order + 1`` predictions over their times,
evaluated at ``tau_i = t_{i-1} + rho_i (t_i - t_{i-1})``; ``rho_i = 1`` leaves UniPC unchanged.
The ratios ``rho_i`` are found once per setting by :func:`search_dc_ratios`: step by step, the
ratio whose next (predicted then corrected) state is closest in mean squared error to a reference
trajectory on a few datapoints (10 in the paper). :class:`CascadePolynomialRegression` predicts
ratios for unseen settings: ``rho(step) = sum_k c_k (step/NFE)^k`` whose coefficients are
polynomials in the guidance scale whose coefficients are polynomials in NFE (the paper's CPR); it
is linear in its ``3 x 3 x 3`` coefficients and fitted by least squares.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from decoding.core.protocols import Model
from decoding.core.types import Prediction, State
from decoding.solvers.base import StepInfo
from decoding.solvers.history import MultistepHistory
from decoding.solvers.schedules import VPSchedule
from decoding.solvers.unipc import UniPC


def lagrange_compensation(x0s: Sequence[Tensor], ts: Sequence[float], tau: float) -> Tensor:
    """The Lagrange interpolant through ``(ts[k], x0s[k])`` evaluated at ``tau``."""
    out = torch.zeros_like(x0s[0])
    for k, (xk, tk) in enumerate(zip(x0s, ts, strict=True)):
        w = 1.0
        for j, tj in enumerate(ts):
            if j != k:
                w *= (tau - tj) / (tk - tj)
        out = out + w * xk
    return out


@dataclass(frozen=True, eq=False)
class DCSolver:
    """UniPC with dynamic compensation, as a :class:`~decoding.solvers.base.Solver`.

    Args:
        ratios: ``rho_i`` for every step (length = number of steps); ``None`` means all 1 (plain UniPC).
        order, variant, corrector, lower_order_final: as :class:`~decoding.solvers.unipc.UniPC`.
        dc_order: interpolation degree (uses ``dc_order + 1`` predictions; compensation starts at
            step ``dc_order``).
    """

    ratios: tuple[float, ...] | None = None
    order: int = 2
    variant: str = "bh2"
    corrector: bool = True
    lower_order_final: bool = True
    dc_order: int = 2
    stochastic = False

    def __post_init__(self) -> None:
        if self.dc_order < 1:
            raise ValueError(f"dc_order must be >= 1, got {self.dc_order}")
        if self.ratios is not None:
            object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
            if not all(math.isfinite(r) for r in self.ratios):
                raise ValueError("DC-Solver ratios must be finite")

    @property
    def base(self) -> UniPC:
        return UniPC(self.order, self.variant, self.corrector, (), self.lower_order_final)

    @property
    def min_steps(self) -> int:
        return self.order

    def ratio(self, info: StepInfo) -> float:
        if self.ratios is None:
            return 1.0
        if len(self.ratios) != info.n_steps:
            raise ValueError(
                f"DC-Solver has {len(self.ratios)} ratios but the grid has {info.n_steps} steps; "
                "search them for this setting (search_dc_ratios) or predict them (CascadePolynomialRegression)"
            )
        return self.ratios[info.i]

    def step(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None, ratio: float | None = None
    ) -> tuple[Tensor, MultistepHistory]:
        """One step; ``ratio`` overrides the stored ratio (used by the search)."""
        base = self.base
        hist, x, order = base.begin(x, pred, info, history, keep=self.dc_order + 1)
        rho = self.ratio(info) if ratio is None else ratio
        if info.i >= self.dc_order and rho != 1.0 and len(hist) >= self.dc_order + 1:
            n = self.dc_order + 1
            tau = hist.ts[1] + rho * (hist.ts[0] - hist.ts[1])
            hist = hist.with_newest(lagrange_compensation(hist.x0s[:n], hist.ts[:n], tau))
        return base.finish(x, info, hist, order)


def _state(x: Tensor, t: float, schedule: VPSchedule) -> State:
    b = x.shape[0]
    return State(
        x=x,
        t=torch.full((b,), t, dtype=torch.float64, device=x.device),
        done=torch.zeros(b, dtype=torch.bool, device=x.device),
        memory={"schedule": schedule},
    )


def _golden(fn: Callable[[float], float], lo: float, hi: float, iters: int) -> tuple[float, float]:
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
    grid: int = 21,
    refine: int = 12,
) -> tuple[float, ...]:
    """Search the compensation ratio of every step against a reference trajectory.

    Args:
        model: ``state -> Prediction``.
        schedule, ts: the grid the ratios are for (``(N + 1,)`` times).
        solver: supplies order/variant/dc_order (its own ratios are ignored).
        x_T: ``(n, ...)`` starting noise of the datapoints (10 in the paper).
        reference: the reference states at every time of ``ts`` (``len == N + 1``), e.g. from
            :func:`~decoding.solvers.reference.reference_solve`.
        lo, hi, grid, refine: candidates ``linspace(lo, hi, grid)`` (plus 1.0), then golden-section
            refinement around the best, inside ``[lo, hi]``.

    Returns:
        ``N`` ratios (1.0 for the first ``dc_order`` steps, where there is nothing to interpolate).
    """
    n = ts.numel() - 1
    if len(reference) != n + 1:
        raise ValueError(f"reference must hold the state at each of the {n + 1} grid times, got {len(reference)}")
    x, hist = x_T, None
    pred = model(_state(x, float(ts[0]), schedule))
    ratios: list[float] = []
    for i in range(n):
        info = StepInfo.make(schedule, ts, i)
        target = reference[i + 1]
        nxt_info = StepInfo.make(schedule, ts, i + 1) if i + 1 < n else None
        t_next = float(ts[i + 1])

        def loss(rho: float, x=x, hist=hist, pred=pred, info=info, target=target, nxt_info=nxt_info, t_next=t_next) -> float:
            x1, h1 = solver.step(x, pred, info, hist, ratio=rho)
            if nxt_info is not None and solver.corrector:
                m1 = model(_state(x1, t_next, schedule))
                _, x1, _ = solver.base.begin(x1, m1, nxt_info, h1, keep=solver.dc_order + 1)
            return float(((x1 - target) ** 2).mean())

        if i < solver.dc_order:
            best = 1.0
        else:
            cands = torch.linspace(lo, hi, grid).tolist() + [1.0]
            losses = [loss(r) for r in cands]
            k = min(range(len(cands)), key=losses.__getitem__)
            best, best_loss = cands[k], losses[k]
            step = (hi - lo) / max(grid - 1, 1)
            r, r_loss = _golden(loss, max(lo, cands[k] - step), min(hi, cands[k] + step), refine)
            if r_loss < best_loss:
                best = r
        ratios.append(best)
        x, hist = solver.step(x, pred, info, hist, ratio=best)
        if i + 1 < n:
            pred = model(_state(x, float(ts[i + 1]), schedule))
    return tuple(ratios)


class CascadePolynomialRegression:
    """Predict DC ratios for unseen (NFE, guidance scale) settings (DC-Solver's CPR).

    ``rho(step) = sum_a c_a x^a``, ``c_a = sum_b d_ab (cfg/12)^b``, ``d_ab = sum_c e_abc (NFE/50)^c``
    with ``x = step / NFE`` (steps counted from 1). Steps before ``dc_order + 1`` always get 1.

    Args:
        degrees: ``(step, cfg, nfe)`` polynomial degrees (the paper uses 2 for each).
        bounds: predictions are clipped to this range (the search's candidate range): a quadratic
            in NFE extrapolated far outside the fitted NFEs otherwise gives ratios that diverge.
    """

    def __init__(
        self, degrees: tuple[int, int, int] = (2, 2, 2), dc_order: int = 2, bounds: tuple[float, float] = (0.0, 2.0)
    ) -> None:
        self.degrees = tuple(int(d) for d in degrees)
        self.dc_order = int(dc_order)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.coef: Tensor | None = None

    def _features(self, step: Tensor, nfe: Tensor, cfg: Tensor) -> Tensor:
        da, db, dc = self.degrees
        x, c, n = step / nfe, cfg / 12.0, nfe / 50.0
        cols = [x**a * c**b * n**k for a in range(da + 1) for b in range(db + 1) for k in range(dc + 1)]
        return torch.stack(cols, dim=-1)

    def fit(self, records: Sequence[tuple[int, float, Sequence[float]]]) -> CascadePolynomialRegression:
        """Fit on ``(nfe, cfg, ratios)`` records (searched ratios, one per step). Returns ``self``."""
        rows, ys = [], []
        for nfe, cfg, ratios in records:
            if len(ratios) != nfe:
                raise ValueError(f"a record with NFE {nfe} must have {nfe} ratios, got {len(ratios)}")
            for k in range(self.dc_order, nfe):
                rows.append((k + 1, nfe, cfg))
                ys.append(ratios[k])
        if not rows:
            raise ValueError("no ratios to fit (every record is shorter than dc_order + 1 steps)")
        r = torch.tensor(rows, dtype=torch.float64)
        feats = self._features(r[:, 0], r[:, 1], r[:, 2])
        y = torch.tensor(ys, dtype=torch.float64)
        self.coef = torch.linalg.lstsq(feats, y[:, None], driver="gelsd").solution[:, 0]
        return self

    def predict(self, nfe: int, cfg: float = 0.0) -> tuple[float, ...]:
        """Ratios for ``nfe`` steps at guidance scale ``cfg``."""
        if self.coef is None:
            raise ValueError("CascadePolynomialRegression is not fitted; call fit() or load()")
        steps = torch.arange(1, nfe + 1, dtype=torch.float64)
        feats = self._features(steps, torch.full_like(steps, float(nfe)), torch.full_like(steps, float(cfg)))
        pred = (feats @ self.coef).clamp(*self.bounds).tolist()
        return tuple(1.0 if k < self.dc_order else float(p) for k, p in enumerate(pred))

    def save(self, path: str | Path) -> Path:
        if self.coef is None:
            raise ValueError("nothing to save: the regression is not fitted")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"degrees": json.dumps(self.degrees), "dc_order": str(self.dc_order), "bounds": json.dumps(self.bounds)}
        save_file({"coef": self.coef.contiguous()}, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CascadePolynomialRegression:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        out = cls(
            tuple(json.loads(meta.get("degrees", "[2, 2, 2]"))),
            int(meta.get("dc_order", "2")),
            tuple(json.loads(meta.get("bounds", "[0.0, 2.0]"))),
        )
        out.coef = load_file(str(path))["coef"]
        return out
