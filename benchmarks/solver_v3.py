"""DPM-Solver-v3 on the trained models: compute the EMS, then its trajectory error against DPM-Solver++ and UniPC.

1. Empirical model statistics (:func:`decoding.solvers.ems.compute_ems`) on ``--ems-samples``
   trajectories (noise seed 2, disjoint from the test noises), ``--knots`` intervals uniform in
   ``lambda``, ``--probes`` Rademacher probes for the Jacobian diagonal; the wall time is printed.
   ``--save`` writes them (float32) to ``models/<model>/dpm_solver_v3_ems.safetensors``, where
   ``get_solver("dpm_solver_v3", ems="<model>")`` finds them. ``--ems FILE`` loads instead.
2. Trajectory error (:mod:`benchmarks.trained_models`) of DPM-Solver-v3 (orders 1-3, corrector on
   and off) and of DPM-Solver++ 2M / 3M and UniPC-2 / UniPC-3 on the same grid and noises.

Run: ``python benchmarks/solver_v3.py --model fashion-small --save``; ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.solver_dc import table  # noqa: E402
from benchmarks.trained_models import (  # noqa: E402
    SHAPE,
    load_model,
    noises,
    reference,
    solve,
    standard_error,
    trajectory_error,
)
from decoding.solvers import EMS, DPMSolverPP, DPMSolverV3, UniPC, compute_ems  # noqa: E402
from decoding.solvers.ems import ems_path  # noqa: E402


def as_float32(ems: EMS) -> EMS:
    """The same statistics stored in float32 (half the file; the solver computes in float64)."""
    f = {k: getattr(ems, k).to(torch.float32) for k in ("l", "s", "b")}
    return EMS(ems.lambdas, f["l"], f["s"], f["b"], ems.schedule_key, ems.model, ems.info)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-small", choices=["fashion-large", "fashion-small", "empirical"])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 6, 8, 10])
    p.add_argument("--spacing", nargs="+", default=["logsnr"])
    p.add_argument("--ref-steps", type=int, default=200)
    p.add_argument("--ems", type=Path, default=None, help="load statistics instead of computing them")
    p.add_argument("--ems-samples", type=int, default=128)
    p.add_argument("--knots", type=int, default=120)
    p.add_argument("--probes", type=int, default=2)
    p.add_argument("--device", default="cpu", help="where the network runs (trajectories stay on the CPU in float64)")
    p.add_argument("--save", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.samples, args.nfe, args.ref_steps = "fashion-small", 4, [5, 6], 20
        args.ems_samples, args.knots, args.probes = 4, 10, 1
    torch.set_num_threads(1)
    start = time.time()
    model, schedule = load_model(args.model, max(args.samples, args.ems_samples), device=args.device)
    info = {}
    if args.ems is not None:
        ems = EMS.load(args.ems)
    else:
        t0 = time.time()
        ems = compute_ems(model, schedule, SHAPE, n_samples=args.ems_samples, knots=args.knots, probes=args.probes,
                          batch_size=min(args.ems_samples, 128), noise=noises(args.ems_samples, 2),
                          model_name=args.model, progress=True)
        info["ems_seconds"] = round(time.time() - t0, 1)
        info["ems_model_calls_per_sample"] = (args.knots + 1) * (2 + 2 * args.probes)
        print(f"EMS: {args.ems_samples} trajectories x {args.knots + 1} knots x {2 + 2 * args.probes} calls in "
              f"{info['ems_seconds']} s", flush=True)
        ems = as_float32(ems)
        if args.save and args.model != "empirical":
            from decoding.models.image import resolve_checkpoint

            print(f"wrote {ems.save(ems_path(resolve_checkpoint(args.model)))}")
    run_dtype = torch.float64 if args.model == "empirical" else torch.float32
    x = noises(args.samples, 0)
    ref = reference(model, schedule, x, args.ref_steps, (args.model, "float32", 0))[-1]
    solvers = {
        "DPM-Solver++ 2M": lambda: DPMSolverPP(2),
        "DPM-Solver++ 3M": lambda: DPMSolverPP(3),
        "UniPC-2 bh2": lambda: UniPC(2),
        "UniPC-3 bh2": lambda: UniPC(3),
    }
    for order in (1, 2, 3):
        for corrector in (True, False):
            solvers[f"DPM-Solver-v3 order {order}{'' if corrector else ', no corrector'}"] = (
                lambda o=order, c=corrector: DPMSolverV3(ems, o, corrector=c))
    results = {}
    for spacing in args.spacing:
        rows = []
        for name, make in solvers.items():
            row = {"solver": name, "errors": {}, "se": {}}
            for n in args.nfe:
                out = solve(model, schedule, make(), x, n, spacing, dtype=run_dtype)
                row["errors"][n], row["se"][n] = trajectory_error(out, ref), standard_error(out, ref)
            rows.append(row)
            print(f"{spacing:7s} {name:40s} " + " ".join(f"{row['errors'][n]:.4f}" for n in args.nfe), flush=True)
        results[spacing] = rows
        print(f"\n{spacing} grid\n" + table(rows, args.nfe))
    out = {
        "command": "python benchmarks/solver_v3.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        "results": results, **info, "seconds": round(time.time() - start, 1),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
