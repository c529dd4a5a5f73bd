"""DC-Solver's cascade polynomial regression (CPR, arXiv 2409.03755): compensation ratios for unseen settings.

``rho(step) = sum_a c_a x^a`` with ``x = step / NFE``, whose coefficients are polynomials in the
guidance scale whose coefficients are polynomials in NFE. It is linear in its ``3 x 3 x 3``
coefficients and fitted by least squares on searched ratios
(:func:`decoding.solvers.dc_search.search_dc_ratios`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor


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
