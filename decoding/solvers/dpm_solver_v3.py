"""DPM-Solver-v3 (Zheng, Lu, Chen & Zhu, arXiv 2310.13268): multistep predictor-corrector with EMS.

With the empirical model statistics ``l, s, b`` (:mod:`decoding.solvers.ems`) and
``f = (sigma eps - l x) / alpha`` the PF-ODE becomes ``d(e^{L} x/alpha)/dlambda = -e^{L} f`` with
``L = int l``; writing ``f = e^{S} (g + B)`` (``S = int s``, ``B = int e^{-S} b``) leaves a function
``g`` that changes slowly where ``df/dlambda ≈ s f + b``. One step from ``s`` to ``t``, with all
integrals taken from ``lambda_s``:

``x_t = alpha_t e^{-L_t} [x_s/alpha_s - sum_k g^{(k)}_s E_k - C]``,
``E_k = int_s^t e^{L+S} (lambda - lambda_s)^k / k!``, ``C = int_s^t e^{L+S} B``,

where ``g^{(k)}_s`` are the Taylor coefficients of the polynomial through ``g`` at the last points
(``g_j = e^{-S_j} f_j - B_j``). The statistics are piecewise linear in ``lambda`` between their
knots; ``L`` and ``S`` are integrated exactly and the other integrals by 8-point Gauss-Legendre on
panels no wider than 0.05, so any grid works (the reference code instead rounds the grid to the
statistics' knots). The corrector recomputes the current point from the previous one with the new
prediction included (order + 1) and keeps ``f`` unchanged (the reference code's invariance of
``sigma eps - l x``). The step onto data (``sigma = 0``) uses ``x0 = (1 - l) x / alpha - f``.
With ``l = 1, s = b = 0`` this is DPM-Solver++ with exactly integrated interpolants
(:class:`~decoding.solvers.dpm_solver_pp.DPMSolverPP` with ``solver_type="heun"`` /
``third_order="taylor"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from decoding.core.types import Prediction
from decoding.solvers.base import StepInfo
from decoding.solvers.ems import EMS
from decoding.solvers.parameterization import data_prediction

_GL_X, _GL_W = (torch.tensor(v, dtype=torch.float64) for v in np.polynomial.legendre.leggauss(8))
MAX_PANEL = 0.05


def _partial_weights() -> Tensor:
    """``W[i, j] = int_{-1}^{x_i} L_j``: integrals up to each Gauss-Legendre node of the Lagrange basis on the nodes.

    ``int_{-1}^{x_i} f ≈ sum_j W[i, j] f(x_j)`` (exact for polynomials of degree < 8).
    """
    leg = np.polynomial.legendre
    x = _GL_X.numpy()
    coef = np.linalg.inv(leg.legvander(x, 7))  # column j: Legendre coefficients of L_j
    anti = leg.legint(coef, axis=0)
    return torch.tensor(leg.legval(x, anti).T - leg.legval(-1.0, anti)[None, :], dtype=torch.float64)


_GL_PARTIAL = _partial_weights()


class _Stats:
    """Piecewise-linear ``l, s, b`` ``(K + 1, D)`` on increasing knots and their exact integrals ``L, S``."""

    def __init__(self, ems: EMS) -> None:
        self.knots = ems.lambdas.to(torch.float64)
        k1 = self.knots.numel()
        self.vals = {n: getattr(ems, n).reshape(k1, -1).to(torch.float64) for n in ("l", "s", "b")}
        widths = (self.knots[1:] - self.knots[:-1])[:, None]
        self.cum = {}
        for n in ("l", "s"):
            v = self.vals[n]
            seg = 0.5 * (v[1:] + v[:-1]) * widths
            self.cum[n] = torch.cat([torch.zeros_like(v[:1]), torch.cumsum(seg, 0)])
        edges = [self.knots[:1]]
        for a, b in zip(self.knots[:-1].tolist(), self.knots[1:].tolist(), strict=True):
            n = max(1, math.ceil((b - a) / MAX_PANEL))
            edges.append(torch.linspace(a, b, n + 1, dtype=torch.float64)[1:])
        self.edges = torch.cat(edges)
        self.b_zero = bool((self.vals["b"] == 0).all())
        self.cache: dict[tuple, _Terms] = {}

    @property
    def lo(self) -> float:
        return float(self.knots[0])

    @property
    def hi(self) -> float:
        return float(self.knots[-1])

    def _locate(self, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k = torch.clamp(torch.searchsorted(self.knots, lam.contiguous(), right=True) - 1, 0, self.knots.numel() - 2)
        width = self.knots[k + 1] - self.knots[k]
        return k, (lam - self.knots[k])[:, None], width[:, None]

    def value(self, name: str, lam: Tensor) -> Tensor:
        """``name`` at ``lam`` ``(M,)`` -> ``(M, D)``."""
        k, d, w = self._locate(lam)
        v = self.vals[name]
        return v[k] + (v[k + 1] - v[k]) * d / w

    def integral(self, name: str, lam: Tensor) -> Tensor:
        """Exact ``int_{knots[0]}^{lam} name`` for ``name`` in ``l, s`` -> ``(M, D)``."""
        k, d, w = self._locate(lam)
        v = self.vals[name]
        return self.cum[name][k] + v[k] * d + (v[k + 1] - v[k]) * d * d / (2 * w)

    def panels(self, a: float, b: float) -> Tensor:
        """Edges of the quadrature panels covering ``[a, b]`` (``a < b``)."""
        inner = self.edges[(self.edges > a) & (self.edges < b)]
        return torch.cat([torch.tensor([a], dtype=torch.float64), inner, torch.tensor([b], dtype=torch.float64)])

    def quad(self, a: float, b: float) -> tuple[Tensor, Tensor, Tensor]:
        """Gauss-Legendre nodes ``(M,)``, weights ``(M,)`` and panel index ``(M,)`` on ``[a, b]``."""
        e = self.panels(a, b)
        lo, hi = e[:-1, None], e[1:, None]
        nodes = 0.5 * (hi - lo) * _GL_X[None] + 0.5 * (hi + lo)
        weights = 0.5 * (hi - lo) * _GL_W[None]
        idx = torch.arange(e.numel() - 1)[:, None].expand_as(nodes)
        return nodes.reshape(-1), weights.reshape(-1), idx.reshape(-1)

    def b_integral(self, a: float, points: Tensor) -> Tensor:
        """``B^a(p) = int_a^p e^{-(S(u) - S(a))} b(u) du`` for each ``p`` in ``points`` ``(P,)`` -> ``(P, D)``."""
        s_a = self.integral("s", torch.tensor([a], dtype=torch.float64))
        out = []
        for p in points.tolist():
            if p == a:
                out.append(torch.zeros_like(s_a[0]))
                continue
            lo, hi = min(a, p), max(a, p)
            nodes, weights, _ = self.quad(lo, hi)
            f = torch.exp(-(self.integral("s", nodes) - s_a)) * self.value("b", nodes)
            val = (weights[:, None] * f).sum(0)
            out.append(val if p > a else -val)
        return torch.stack(out)


@dataclass(frozen=True)
class _Terms:
    """Per-dimension coefficients of one step from ``lam_s`` to ``lam_t`` (all ``(D,)`` or ``(n, D)``)."""

    l_rel: Tensor  # L(t) - L(s)
    e: Tensor  # (order, D): E_k, k = 0..order-1
    c: Tensor  # C
    s_hist: Tensor  # (n, D): S(lam_j) - S(s)
    b_hist: Tensor  # (n, D): B^s(lam_j)


def _terms(
    st: _Stats, lam_s: float, lam_t: float, lam_hist: list[float], order: int, device: torch.device
) -> _Terms:
    """The step's coefficients on ``device`` (computed once on the CPU in float64, then copied)."""
    key = (lam_s, lam_t, tuple(lam_hist), order, str(device))
    if key not in st.cache:  # memoised: a grid's steps are the same on every call
        if len(st.cache) > 256:
            st.cache.clear()
        t = _compute_terms(st, lam_s, lam_t, lam_hist, order)
        st.cache[key] = _Terms(*(getattr(t, f.name).to(device) for f in fields(_Terms)))
    return st.cache[key]


def _compute_terms(st: _Stats, lam_s: float, lam_t: float, lam_hist: list[float], order: int) -> _Terms:
    ls = torch.tensor([lam_s], dtype=torch.float64)
    l_s, s_s = st.integral("l", ls), st.integral("s", ls)
    nodes, weights, panel = st.quad(lam_s, lam_t)
    expo = torch.exp(st.integral("l", nodes) - l_s + st.integral("s", nodes) - s_s)  # (M, D)
    du = (nodes - lam_s)[:, None]
    e = torch.stack([(weights[:, None] * expo * du**k / math.factorial(k)).sum(0) for k in range(order)])
    if st.b_zero:
        c = torch.zeros_like(e[0])
    else:
        c = _c_term(st, lam_s, lam_t, nodes, weights, panel, expo, s_s)
    lam_h = torch.tensor(lam_hist, dtype=torch.float64)
    s_hist = st.integral("s", lam_h) - s_s if lam_hist else torch.zeros(0, l_s.shape[1], dtype=torch.float64)
    b_hist = st.b_integral(lam_s, lam_h) if lam_hist and not st.b_zero else torch.zeros_like(s_hist)
    l_rel = (st.integral("l", torch.tensor([lam_t], dtype=torch.float64)) - l_s)[0]
    return _Terms(l_rel, e, c, s_hist, b_hist)


def _c_term(
    st: _Stats, lam_s: float, lam_t: float, nodes: Tensor, weights: Tensor, panel: Tensor, expo: Tensor, s_s: Tensor
) -> Tensor:
    """``C = int_s^t e^{L+S} B^s``, ``B^s`` at each node = full panels before it + a partial panel."""
    edges = st.panels(lam_s, lam_t)
    eb = torch.exp(-(st.integral("s", nodes) - s_s)) * st.value("b", nodes)  # (M, D)
    per_panel = (weights[:, None] * eb).reshape(edges.numel() - 1, _GL_X.numel(), -1).sum(1)
    at_edges = torch.cat([torch.zeros_like(per_panel[:1]), torch.cumsum(per_panel, 0)])
    half = (0.5 * (edges[1:] - edges[:-1]))[:, None, None]  # (P, 1, 1)
    partial = (half * torch.einsum("ij,pjd->pid", _GL_PARTIAL, eb.reshape(edges.numel() - 1, _GL_X.numel(), -1)))
    partial = partial.reshape(nodes.numel(), -1)
    return (weights[:, None] * expo * (at_edges[panel] + partial)).sum(0)


def v3_update(
    st: _Stats,
    x_s: Tensor,
    alpha_s: float,
    alpha_t: float,
    lam_s: float,
    lam_t: float,
    fs: list[Tensor],
    lams: list[float],
) -> Tensor:
    """One DPM-Solver-v3 step from ``(x_s, lam_s)`` to ``lam_t``.

    ``fs[0]`` is ``f`` at ``lam_s`` and ``fs[1:]`` at ``lams[1:]`` (any other points, e.g. earlier
    ones or, for the corrector, the target itself); the step's order is ``len(fs)``.
    """
    shape = x_s.shape
    n = len(fs) - 1
    terms = _terms(st, lam_s, lam_t, lams[1:], n + 1, x_s.device)
    flat = [f.reshape(shape[0], -1).to(torch.float64) for f in fs]
    g0 = flat[0]
    integral = g0 * terms.e[0] + terms.c
    if n > 0:
        gs = [torch.exp(-terms.s_hist[j]) * flat[j + 1] - terms.b_hist[j] for j in range(n)]
        du = torch.tensor([lams[j + 1] - lam_s for j in range(n)], dtype=torch.float64, device=x_s.device)
        a = torch.stack([du**k / math.factorial(k) for k in range(1, n + 1)], dim=1)  # (n, n)
        rhs = torch.stack([g - g0 for g in gs])  # (n, B, D)
        coef = torch.linalg.solve(a, rhs.reshape(n, -1)).reshape(rhs.shape)
        for k in range(n):
            integral = integral + coef[k] * terms.e[k + 1]
    xs = x_s.reshape(shape[0], -1).to(torch.float64)
    out = alpha_t * torch.exp(-terms.l_rel) * (xs / alpha_s - integral)
    return out.reshape(shape).to(x_s.dtype)


@dataclass(frozen=True)
class V3History:
    """DPM-Solver-v3's history: ``f`` values and lambdas (newest first), last corrected sample, last order."""

    fs: tuple[Tensor, ...] = ()
    lams: tuple[float, ...] = ()
    last_x: Tensor | None = None
    last_order: int = 0


@dataclass(frozen=True, eq=False)
class DPMSolverV3:
    """DPM-Solver-v3 as a :class:`~decoding.solvers.base.Solver`.

    Args:
        ems: the model's statistics (:class:`~decoding.solvers.ems.EMS`).
        order: predictor order 1-3.
        corrector: use the corrector.
        corrector_order: ``"plus1"``: the corrector has the predictor's order + 1 (it uses the new
            prediction as one more point); ``"same"``: the predictor's order (the reference code's
            ``c_pseudo=False``, used in its CIFAR-10 scripts; a first-order corrector is skipped).
        lower_order_final: predictor order ``min(order, steps left)`` (reference code's rule).
        model: if set, must equal ``ems.model`` (guards against statistics of another model).
    """

    ems: EMS
    order: int = 2
    corrector: bool = True
    corrector_order: str = "plus1"
    lower_order_final: bool = True
    model: str | None = None
    stochastic = False
    #: the time grid measured best for this solver on the trained models (docs/perf/solvers.md)
    default_spacing: ClassVar[str] = "logsnr_trunc"

    def __post_init__(self) -> None:
        if self.order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver-v3 order must be 1, 2 or 3, got {self.order}")
        if self.corrector_order not in ("plus1", "same"):
            raise ValueError(f"corrector_order must be 'plus1' or 'same', got {self.corrector_order!r}")
        if self.model is not None and self.model != self.ems.model:
            raise ValueError(f"statistics were computed for model {self.ems.model!r}, not {self.model!r}")
        object.__setattr__(self, "_stats", _Stats(self.ems))

    @property
    def min_steps(self) -> int:
        return self.order

    def _check(self, x: Tensor, info: StepInfo) -> None:
        if info.schedule.key != self.ems.schedule_key:
            raise ValueError(
                f"DPM-Solver-v3 statistics were computed under schedule {self.ems.schedule_key}, "
                f"the process uses {info.schedule.key}; recompute them with compute_ems"
            )
        if tuple(x.shape[1:]) != self.ems.shape:
            raise ValueError(f"statistics are for samples of shape {self.ems.shape}, got {tuple(x.shape[1:])}")
        st: _Stats = self._stats  # type: ignore[attr-defined]
        lams = [float(v) for v in info.lambdas if math.isfinite(float(v))]
        tol = 1e-6 * max(1.0, abs(st.lo), abs(st.hi))
        if min(lams) < st.lo - tol or max(lams) > st.hi + tol:
            raise ValueError(
                f"statistics cover lambda in [{st.lo:.3f}, {st.hi:.3f}] but the grid needs "
                f"[{min(lams):.3f}, {max(lams):.3f}]; recompute them over the grid's time range"
            )

    def step(
        self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None
    ) -> tuple[Tensor, V3History]:
        st: _Stats = self._stats  # type: ignore[attr-defined]
        if info.i == 0:
            self._check(x, info)
        hist = history if history is not None else V3History()
        a_s, s_s, l_s = info.s
        a_t, _, l_t = info.t
        lam_s = min(max(l_s, st.lo), st.hi)
        l_now = st.value("l", torch.tensor([lam_s], dtype=torch.float64))[0].reshape(x.shape[1:]).to(x)
        x0 = data_prediction(pred, x, a_s, s_s)
        f = (1.0 - l_now) * x / a_s - x0
        extra = 1 if self.corrector_order == "plus1" else 0
        order_c = min(hist.last_order + extra, len(hist.fs) + 1)
        if self.corrector and hist.last_x is not None and order_c >= 1 + (1 - extra):
            a_prev = float(info.alphas[info.i - 1])
            pts_f = [hist.fs[0], f] + list(hist.fs[1 : order_c - 1])
            pts_l = [hist.lams[0], lam_s] + list(hist.lams[1 : order_c - 1])
            x = v3_update(st, hist.last_x, a_prev, a_s, hist.lams[0], lam_s, pts_f, pts_l)
        fs = ((f,) + hist.fs)[: self.order + 1]
        lams = ((lam_s,) + hist.lams)[: self.order + 1]
        order = min(self.order, info.i + 1, len(fs))
        if self.lower_order_final:
            order = min(order, info.remaining)
        if info.to_data:
            out = (1.0 - l_now) * x / a_s - f
            order = 1
        else:
            lam_t = min(max(l_t, st.lo), st.hi)
            out = v3_update(st, x, a_s, a_t, lam_s, lam_t, list(fs[:order]), list(lams[:order]))
        return out, replace(hist, fs=fs, lams=lams, last_x=x, last_order=order)
