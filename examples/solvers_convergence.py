"""Convergence orders of the solvers on Gaussian data, where the probability-flow ODE has a closed form.

    python examples/solvers_convergence.py

Prints the error against the exact ODE map at an intermediate time for a few step counts and the
fitted slope of log(error) against log(NFE): ~1 for DDIM, ~2 for DPM-Solver++(2M), ~3 for 3M and
UniPC-2 (predictor order 2 + corrector), ~4 for UniPC-3.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from decoding import decode
from decoding.denoisers import ClosedFormModel, GaussianData
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import DDIM, DPMSolverPP, LinearVPSchedule, UniPC


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[12, 24, 48])
    p.add_argument("--samples", type=int, default=256)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    data = GaussianData(torch.randn(6, generator=g, dtype=torch.float64), a @ a.T / 6 + 0.05 * torch.eye(6, dtype=torch.float64))
    schedule, t_stop = LinearVPSchedule(), 0.05
    x = torch.randn(args.samples, 6, generator=g, dtype=torch.float64)
    exact = data.ode_map(x, float(schedule.alpha(1.0)), float(schedule.sigma(1.0)),
                         float(schedule.alpha(t_stop)), float(schedule.sigma(t_stop)))
    solvers = {
        "DDIM": DDIM(),
        "DPM-Solver++(2M)": DPMSolverPP(2, lower_order_final=False),
        "DPM-Solver++(3M)": DPMSolverPP(3, lower_order_final=False),
        "UniPC-2 (bh2)": UniPC(2, lower_order_final=False),
        "UniPC-3 (bh2)": UniPC(3, lower_order_final=False),
    }
    print(f"{'solver':18s} " + " ".join(f"N={n:<8d}" for n in args.steps) + " slope")
    for name, solver in solvers.items():
        errs = []
        for n in args.steps:
            lam = torch.linspace(float(schedule.lambda_(1.0)), float(schedule.lambda_(t_stop)), n + 1, dtype=torch.float64)
            ts = schedule.t_of_lambda(lam)
            ts[0], ts[-1] = 1.0, t_stop
            out = decode(ClosedFormModel(data), ContinuousProcess(schedule, solver, timesteps=ts), x, steps=n).x
            errs.append(float((out - exact).pow(2).mean().sqrt()))
        order = -np.polyfit(np.log(args.steps), np.log(errs), 1)[0]
        print(f"{name:18s} " + " ".join(f"{e:<10.2e}" for e in errs) + f" {order:.2f}")


if __name__ == "__main__":
    main()
