"""Solver names for the edge (CLI, eval suites, :func:`decoding.solvers.api.sample`).

``SOLVERS`` maps a name to a constructor; :func:`get_solver` builds one and says which names
exist when it does not know a name. The core never looks names up: import the classes instead.
"""

from __future__ import annotations

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


def _dualfast(base: Callable[..., Solver], c: float, tau: str = "previous", **kwargs: Any) -> DualFast:
    return DualFast(base(**kwargs), c=c, tau=tau)


#: DualFast's ``c`` for each registered base (``docs/perf/solvers.md``, DualFast section).
DUALFAST_C = {"ddim": 0.5, "dpmpp_2m": 0.1, "unipc": 0.1}

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
    # DualFast's weight c per base solver: chosen by trajectory error on the trained models
    "dualfast_ddim": partial(_dualfast, DDIM, c=DUALFAST_C["ddim"]),
    "dualfast_dpmpp_2m": partial(_dualfast, partial(DPMSolverPP, order=2), c=DUALFAST_C["dpmpp_2m"]),
    "dualfast_unipc": partial(_dualfast, partial(UniPC, order=2, variant="bh2"), c=DUALFAST_C["unipc"]),
}


def get_solver(name: str, **kwargs: Any) -> Solver:
    """Build the solver called ``name`` with ``kwargs``; unknown names raise a ValueError listing the known ones."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of: {', '.join(sorted(SOLVERS))}")
    try:
        return SOLVERS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for solver {name!r}: {err}") from None
