"""Solver names for the edge (CLI, eval suites, :func:`decoding.solvers.api.sample`).

``SOLVERS`` maps a name to a constructor; :func:`get_solver` builds one and says which names
exist when it does not know a name. The core never looks names up: import the classes instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from decoding.solvers.base import Solver
from decoding.solvers.dc_cpr import CascadePolynomialRegression
from decoding.solvers.dc_solver import RATIOS_FILENAME, DCRatios, DCSolver
from decoding.solvers.ddim import DDIM
from decoding.solvers.dpm_solver_pp import DPMSolverPP
from decoding.solvers.dpm_solver_v3 import DPMSolverV3
from decoding.solvers.dualfast import DualFast
from decoding.solvers.ems import EMS, EMS_FILENAME
from decoding.solvers.unipc import UniPC


def _v3(ems: EMS | str | Path | None = None, **kwargs: Any) -> DPMSolverV3:
    if ems is None:
        raise ValueError(
            "dpm_solver_v3 needs the model's statistics: pass ems=<model name, e.g. 'fashion-large', a model "
            "folder, a .safetensors file or an EMS>; compute them with decoding.solvers.ems.compute_ems"
        )
    return DPMSolverV3(ems if isinstance(ems, EMS) else EMS.load(model_file(ems, EMS_FILENAME)), **kwargs)


def model_file(name: str | Path, filename: str) -> Path:
    """``name`` as a file, a folder holding ``filename``, or a zoo model name (``models/<name>/filename``)."""
    path = Path(name)
    if path.is_file() or path.is_dir():
        return path / filename if path.is_dir() else path
    from decoding.models.image import models_root

    return models_root() / str(name) / filename


def _dc(
    ratios: Any = None, cpr: str | Path | CascadePolynomialRegression | None = None, steps: int | None = None,
    cfg: float = 0.0, **kwargs: Any,
) -> DCSolver:
    if cpr is not None:
        if steps is None:
            raise ValueError("dc_solver with cpr= needs steps= to predict the ratios for")
        reg = cpr if isinstance(cpr, CascadePolynomialRegression) else CascadePolynomialRegression.load(cpr)
        ratios = reg.predict(int(steps), cfg)
    if isinstance(ratios, str | Path):
        ratios = DCRatios.load(model_file(ratios, RATIOS_FILENAME))
    if isinstance(ratios, DCRatios):
        settings = {"order": ratios.order, "variant": ratios.variant, "dc_order": ratios.dc_order,
                    "compensate_final": ratios.compensate_final}
        kwargs = {**settings, **kwargs}
    return DCSolver(ratios=ratios, **kwargs)


def _dualfast(base: Callable[..., Solver], c: float = 0.5, **kwargs: Any) -> DualFast:
    if c != 0:
        warnings.warn(
            "dualfast_* is an unverified reconstruction of DualFast (arXiv 2506.13058) that does not converge "
            "to the ODE solution as steps grow on a trained model (see decoding/solvers/dualfast.py); "
            "use dpmpp_2m or unipc_bh2 for results",
            UserWarning,
            stacklevel=3,
        )
    return DualFast(base(**kwargs), c=c)


SOLVERS: dict[str, Callable[..., Solver]] = {
    "ddim": DDIM,
    "ddpm": partial(DDIM, eta=1.0),
    "dpmpp_2m": partial(DPMSolverPP, order=2),
    "dpmpp_3m": partial(DPMSolverPP, order=3),
    "dpmpp_2m_sde": partial(DPMSolverPP, order=2, sde=True),
    "unipc_bh1": partial(UniPC, order=2, variant="bh1"),
    "unipc_bh2": partial(UniPC, order=2, variant="bh2"),
    "unipc_3": partial(UniPC, order=3, variant="bh2"),
    "dpm_solver_v3": _v3,
    "dc_solver": _dc,
    "dualfast_ddim": partial(_dualfast, DDIM),
    "dualfast_dpmpp_2m": partial(_dualfast, partial(DPMSolverPP, order=2)),
    "dualfast_unipc": partial(_dualfast, partial(UniPC, order=2, variant="bh2")),
}


def get_solver(name: str, **kwargs: Any) -> Solver:
    """Build the solver called ``name`` with ``kwargs``; unknown names raise a ValueError listing the known ones."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of: {', '.join(sorted(SOLVERS))}")
    try:
        return SOLVERS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for solver {name!r}: {err}") from None
