"""DC-Solver: search compensation ratios on 10 datapoints, fit the cascade polynomial, use it for a new NFE.

    python examples/solvers_dc_solver.py --fit-nfe 5 6 8 --new-nfe 7

Model: the exact denoiser of a 2-D Gaussian mixture. For each fitting NFE the ratios are searched
against an RK4 reference trajectory (arXiv 2409.03755); the regression then predicts the ratios of
an NFE it has not seen, and the example compares DC-Solver with UniPC on fresh noise.
"""

from __future__ import annotations

import argparse

import torch

from decoding.denoisers import ClosedFormModel, GaussianMixtureData
from decoding.solvers import (
    CascadePolynomialRegression,
    DCSolver,
    DiscreteVPSchedule,
    UniPC,
    make_timesteps,
    search_dc_ratios,
)
from decoding.solvers.api import sample
from decoding.solvers.reference import reference_solve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fit-nfe", type=int, nargs="+", default=[5, 6, 8, 10])
    p.add_argument("--new-nfe", type=int, default=7)
    p.add_argument("--ref-steps", type=int, default=400)
    p.add_argument("--samples", type=int, default=256)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    data = GaussianMixtureData(torch.tensor([0.5, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]),
                               0.05 + 0.2 * torch.rand(2, 2, generator=g))
    schedule = DiscreteVPSchedule()
    model = ClosedFormModel(data, schedule)
    x10 = torch.randn(10, 2, generator=g, dtype=torch.float64)
    records = []
    for n in args.fit_nfe:
        ts = make_timesteps(schedule, n)
        ratios = search_dc_ratios(model, schedule, DCSolver(), ts, x10, reference_solve(model, schedule, x10, ts, args.ref_steps))
        records.append((n, 0.0, ratios))
        print(f"NFE {n:2d} searched ratios: " + " ".join(f"{r:.3f}" for r in ratios))
    reg = CascadePolynomialRegression((2, 0, 2 if len(records) > 2 else 0)).fit(records)
    ratios = reg.predict(args.new_nfe)
    print(f"NFE {args.new_nfe:2d} predicted ratios: " + " ".join(f"{r:.3f}" for r in ratios))
    x = torch.randn(args.samples, 2, generator=g, dtype=torch.float64)
    ref = reference_solve(model, schedule, x, [schedule.t_max, schedule.t_end], args.ref_steps)[-1]
    for label, solver in (("DC-Solver (CPR)", DCSolver(ratios)), ("UniPC", UniPC(2))):
        out = sample(model, x, solver, steps=args.new_nfe, schedule=schedule).x
        print(f"{label:16s} NFE {args.new_nfe}: RMSE vs reference {float((out - ref).pow(2).mean().sqrt()):.4f}")


if __name__ == "__main__":
    main()
