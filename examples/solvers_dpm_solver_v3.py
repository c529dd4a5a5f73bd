"""DPM-Solver-v3: compute a model's empirical statistics, store them next to the model, sample with them.

    python examples/solvers_dpm_solver_v3.py --model-dir /tmp/fmnist-empirical

The model is the empirical Fashion-MNIST denoiser. ``compute_ems`` integrates ODE trajectories on a
log-SNR grid and estimates l, s, b (arXiv 2310.13268); ``EMS.save`` writes them as safetensors in
the model folder; the solver then refuses statistics of another schedule, shape or model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from decoding.denoisers import ClosedFormModel, fashion_mnist_data
from decoding.solvers import EMS, DiscreteVPSchedule, DPMSolverPP, DPMSolverV3, compute_ems
from decoding.solvers.api import sample
from decoding.solvers.ems import ems_path
from decoding.solvers.reference import reference_solve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", type=Path, default=Path("fmnist-empirical"))
    p.add_argument("--n-data", type=int, default=1000)
    p.add_argument("--ems-samples", type=int, default=64)
    p.add_argument("--knots", type=int, default=100)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--ref-steps", type=int, default=500)
    args = p.parse_args()
    schedule = DiscreteVPSchedule()
    name = f"fashion-mnist-empirical-{args.n_data}"
    model = ClosedFormModel(fashion_mnist_data(args.n_data), schedule)
    path = ems_path(args.model_dir)
    if not path.is_file():
        ems = compute_ems(model, schedule, (1, 28, 28), n_samples=args.ems_samples, knots=args.knots, probes=2,
                          model_name=name, progress=True)
        ems.save(path)
        print(f"statistics -> {path}")
    ems = EMS.load(args.model_dir)
    x = torch.randn(args.samples, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = reference_solve(model, schedule, x, [schedule.t_max, schedule.t_end], steps=args.ref_steps)[-1]
    for label, solver in (("DPM-Solver-v3", DPMSolverV3(ems, 2, model=name)), ("DPM-Solver++(2M)", DPMSolverPP(2))):
        out = sample(model, x, solver, steps=args.steps, schedule=schedule).x
        print(f"{label:18s} {args.steps} NFE: RMSE vs {args.ref_steps}-step RK4 reference {float((out - ref).pow(2).mean().sqrt()):.4f}")


if __name__ == "__main__":
    main()
