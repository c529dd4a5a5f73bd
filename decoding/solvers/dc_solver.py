"""DC-Solver (Zhao, Wang, Zhou & Lu, arXiv 2409.03755): dynamic compensation for a predictor-corrector solver.

UniPC evaluates the model at the *predicted* point but uses the prediction with the *corrected*
sample, a misalignment. DC-Solver replaces the newest data prediction ``m_i`` (after the
corrector) by the Lagrange interpolant of the last ``dc_order + 1`` predictions over their times,
evaluated at ``tau_i = t_{i-1} + rho_i (t_i - t_{i-1})``; ``rho_i = 1`` leaves UniPC unchanged.
The ratios ``rho_i`` are searched once per setting (:mod:`decoding.solvers.dc_search`) and kept
per NFE in a :class:`DCRatios` table (a small safetensors file next to a model); the cascade
polynomial regression (:mod:`decoding.solvers.dc_cpr`) predicts them for unseen settings.

The step onto clean data (``sigma = 0``) is *not* compensated by default: on that step every
solver here returns the data prediction itself, and a compensated one would return a blend of
the last predictions (an image no denoiser produced). The paper's reference code never takes such
a step: its grids end at a small positive noise level (``t_0 = 1/N``) with an ordinary UniP step.
``compensate_final=True`` compensates it anyway (for comparison).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.core.types import Prediction
from decoding.data.weights import load_tensors, save_tensors
from decoding.solvers.base import StepInfo
from decoding.solvers.history import MultistepHistory
from decoding.solvers.unipc import UniPC

RATIOS_FILENAME = "dc_solver_ratios.safetensors"


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


@dataclass(frozen=True)
class DCRatios:
    """Searched compensation ratios per NFE, for one base solver, time grid and model.

    Attributes:
        ratios: ``{NFE: (rho_0, ..., rho_{NFE-1})}``.
        grids: ``{NFE: times}`` the ratios were searched on (``NFE + 1`` times each); a run on
            another grid is refused, since the ratios of one grid mean nothing on another.
        order, variant, dc_order, compensate_final: the :class:`DCSolver` they were searched for.
        schedule_key: the noise schedule of the grids.
        spacing: the name of the grids' spacing (:func:`~decoding.solvers.timesteps.make_timesteps`),
            the solver's default grid when it uses this table; ``""`` if the grids were given.
        model: name of the model; info: provenance (datapoints, reference, date).
    """

    ratios: Mapping[int, tuple[float, ...]]
    grids: Mapping[int, tuple[float, ...]]
    order: int = 2
    variant: str = "bh2"
    dc_order: int = 2
    compensate_final: bool = False
    schedule_key: str = ""
    spacing: str = ""
    model: str = ""
    info: str = ""

    def __post_init__(self) -> None:
        if set(self.ratios) != set(self.grids):
            raise ValueError(f"DCRatios: NFEs of ratios {sorted(self.ratios)} and grids {sorted(self.grids)} differ")
        for n, r in self.ratios.items():
            if len(r) != n or len(self.grids[n]) != n + 1:
                raise ValueError(f"DCRatios: NFE {n} needs {n} ratios and {n + 1} grid times")
            if not all(math.isfinite(v) for v in r):
                raise ValueError(f"DCRatios: NFE {n} has a non-finite ratio")

    def for_grid(self, ts: Tensor, schedule_key: str) -> tuple[float, ...]:
        """The ratios searched on the grid ``ts`` (float64 ``(N + 1,)``); ValueError for any other grid."""
        n = int(ts.numel()) - 1
        if self.schedule_key and schedule_key != self.schedule_key:
            raise ValueError(
                f"DC-Solver ratios were searched under schedule {self.schedule_key}, the run uses {schedule_key}"
            )
        if n not in self.ratios:
            raise ValueError(
                f"DC-Solver has searched ratios for NFE {sorted(self.ratios)}, not {n}; search them "
                "(decoding.solvers.dc_search.search_dc_ratios) or predict them (CascadePolynomialRegression)"
            )
        want = torch.tensor(self.grids[n], dtype=torch.float64)
        if not torch.allclose(ts.to(torch.float64), want, rtol=1e-9, atol=1e-9):
            raise ValueError(
                f"DC-Solver ratios for NFE {n} were searched on the grid {[round(v, 3) for v in want.tolist()]}, "
                f"this run uses {[round(v, 3) for v in ts.tolist()]}; use the same spacing or search again"
            )
        return self.ratios[n]

    def reset(self, nfes: Sequence[int], reason: str) -> DCRatios:
        """This table with every ratio of ``nfes`` set to 1 (DC-Solver = its base UniPC there).

        For NFEs where the searched ratios lower the search objective (trajectory error) but not
        the measure users care about (FID against the base on the same noises): the reason is
        kept in ``info`` under ``"reset"`` so the file says why its ratios are 1.
        """
        chosen = set(nfes)
        missing = sorted(chosen - set(self.ratios))
        if missing:
            raise ValueError(f"DCRatios.reset: no ratios for NFE {missing} (the table has {sorted(self.ratios)})")
        if not reason.strip():
            raise ValueError("DCRatios.reset needs a reason (what was measured), kept in the table's info")
        try:
            info = json.loads(self.info) if self.info else {}
        except json.JSONDecodeError:
            info = {"note": self.info}
        if not isinstance(info, dict):
            info = {"note": info}
        resets = dict(info.get("reset", {}))
        resets.update({str(n): reason for n in sorted(chosen)})
        info["reset"] = resets
        ratios = {n: ((1.0,) * n if n in chosen else r) for n, r in self.ratios.items()}
        return replace(self, ratios=ratios, info=json.dumps(info))

    def save(self, path: str | Path) -> Path:
        """Write ``ratio_<N>`` and ``grid_<N>`` float64 tensors with the settings as metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for n in sorted(self.ratios):
            tensors[f"ratio_{n}"] = torch.tensor(self.ratios[n], dtype=torch.float64)
            tensors[f"grid_{n}"] = torch.tensor(self.grids[n], dtype=torch.float64)
        meta = {
            "order": str(self.order), "variant": self.variant, "dc_order": str(self.dc_order),
            "compensate_final": json.dumps(self.compensate_final), "schedule": self.schedule_key,
            "spacing": self.spacing, "model": self.model, "info": self.info,
        }
        save_tensors(tensors, path, meta)  # atomic: no half-written file
        return path

    @classmethod
    def load(cls, path: str | Path) -> DCRatios:
        """Read a file written by :meth:`save`; a folder means ``<folder>/dc_solver_ratios.safetensors``."""
        path = Path(path)
        if path.is_dir():
            path = path / RATIOS_FILENAME
        if not path.is_file():
            raise ValueError(f"no DC-Solver ratios at {path}; search them with decoding.solvers.dc_search")
        data, meta = load_tensors(path)
        nfes = sorted(int(k.split("_")[1]) for k in data if k.startswith("ratio_"))
        return cls(
            {n: tuple(data[f"ratio_{n}"].tolist()) for n in nfes},
            {n: tuple(data[f"grid_{n}"].tolist()) for n in nfes},
            int(meta.get("order", "2")), meta.get("variant", "bh2"), int(meta.get("dc_order", "2")),
            json.loads(meta.get("compensate_final", "false")), meta.get("schedule", ""),
            meta.get("spacing", ""), meta.get("model", ""), meta.get("info", ""),
        )


@dataclass(frozen=True, eq=False)
class DCSolver:
    """UniPC with dynamic compensation, as a :class:`~decoding.solvers.base.Solver`.

    Args:
        ratios: ``rho_i`` for every step of one grid (length = number of steps), a
            :class:`DCRatios` table (ratios per NFE, checked against the run's grid), or ``None``
            (all 1: plain UniPC).
        order, variant, corrector, lower_order_final: as :class:`~decoding.solvers.unipc.UniPC`.
        dc_order: interpolation degree (uses ``dc_order + 1`` predictions; compensation starts at
            step ``dc_order``).
        compensate_final: also compensate the step onto ``sigma = 0`` (see the module docstring).
    """

    ratios: tuple[float, ...] | DCRatios | None = None
    order: int = 2
    variant: str = "bh2"
    corrector: bool = True
    lower_order_final: bool = True
    dc_order: int = 2
    compensate_final: bool = False
    stochastic: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.dc_order < 1:
            raise ValueError(f"dc_order must be >= 1, got {self.dc_order}")
        if isinstance(self.ratios, DCRatios):
            t = self.ratios
            mine = (self.order, self.variant, self.dc_order, self.compensate_final)
            theirs = (t.order, t.variant, t.dc_order, t.compensate_final)
            if mine != theirs:
                raise ValueError(
                    f"DC-Solver ratios were searched for (order, variant, dc_order, compensate_final) = {theirs}, "
                    f"the solver has {mine}; build it with the table's settings or search again"
                )
        elif self.ratios is not None:
            object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
            if not all(math.isfinite(r) for r in self.ratios):
                raise ValueError("DC-Solver ratios must be finite")
        self.base  # noqa: B018 - validates order and variant

    @property
    def default_spacing(self) -> str:
        """The grid of the ratio table, else UniPC's default."""
        if isinstance(self.ratios, DCRatios) and self.ratios.spacing:
            return self.ratios.spacing
        return UniPC.default_spacing

    @property
    def base(self) -> UniPC:
        return UniPC(self.order, self.variant, self.corrector, (), self.lower_order_final)

    @property
    def min_steps(self) -> int:
        return self.order

    def ratio(self, info: StepInfo) -> float:
        """``rho_i`` of step ``info.i`` (1 where nothing is compensated)."""
        if self.ratios is None or (info.to_data and not self.compensate_final):
            return 1.0
        if isinstance(self.ratios, DCRatios):
            return self.ratios.for_grid(info.ts, info.schedule.key)[info.i]
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


def ratios_path(model_dir: str | Path) -> Path:
    """Where a model's ratio table lives: ``<model_dir>/dc_solver_ratios.safetensors``."""
    return Path(model_dir) / RATIOS_FILENAME
