"""Continuous-diffusion solvers as pure step functions with explicit history.

Schedules (:mod:`~decoding.solvers.schedules`), time grids (:mod:`~decoding.solvers.timesteps`),
parameterisations (:mod:`~decoding.solvers.parameterization`), and the solvers: DDIM, DPM-Solver++
(2M, 3M, SDE), UniPC, DPM-Solver-v3 (with its statistics tool :mod:`~decoding.solvers.ems`),
DC-Solver and DualFast. Names map to constructors only in :mod:`decoding.solvers.registry`;
:func:`decoding.solvers.api.sample` runs one through the decode loop.
"""

from decoding.solvers.base import Solver, StepInfo
from decoding.solvers.dc_cpr import CascadePolynomialRegression
from decoding.solvers.dc_search import search_dc_ratios
from decoding.solvers.dc_solver import DCRatios, DCSolver
from decoding.solvers.ddim import DDIM
from decoding.solvers.dpm_solver_pp import DPMSolverPP
from decoding.solvers.dpm_solver_v3 import DPMSolverV3
from decoding.solvers.dualfast import DualFast
from decoding.solvers.ems import EMS, compute_ems
from decoding.solvers.parameterization import NetworkModel
from decoding.solvers.schedules import DiscreteVPSchedule, LinearVPSchedule, VPSchedule
from decoding.solvers.timesteps import make_timesteps, validate_timesteps
from decoding.solvers.unipc import UniPC

__all__ = [
    "DDIM",
    "DPMSolverPP",
    "DPMSolverV3",
    "CascadePolynomialRegression",
    "DCRatios",
    "DCSolver",
    "DiscreteVPSchedule",
    "DualFast",
    "EMS",
    "LinearVPSchedule",
    "NetworkModel",
    "Solver",
    "StepInfo",
    "UniPC",
    "VPSchedule",
    "compute_ems",
    "make_timesteps",
    "search_dc_ratios",
    "validate_timesteps",
]
