"""DC-Solver on the trained models: ratio searches and their error on held-out noises against base UniPC.

Ratios are searched per NFE (:func:`decoding.solvers.dc_search.search_dc_ratios`) against an RK4
reference trajectory of ``--search-samples`` datapoints (seed 1; 10 in the paper) and scored on
the test noises of :mod:`benchmarks.trained_models` (seed 0, disjoint): mean per-sample RMSE of
the final images against the reference, next to the base UniPC on the same grid. Variants:

- ``greedy global``: the paper's step-by-step objective, scanned over ``[0, 2]`` in steps of 0.1
  (the search before this benchmark);
- ``greedy local``: the same objective, downhill from ``rho = 1`` (the paper's gradient descent from 1);
- ``final``: coordinate descent on the final samples' error (the default of ``search_dc_ratios``);
- ``final reg=R``: with the pull ``R * loss(1) * (rho - 1)^2``;
- ``final, compensated data step``: also compensating the step onto ``sigma = 0``.

``--save`` writes the ``final`` ratios of the largest search set as
``models/<model>/dc_solver_ratios.safetensors``; ``--reset-nfe N... --reason TEXT`` (no search)
sets the saved ratios of those NFEs to 1 where FID showed the searched ones worse than UniPC.

Run: ``python benchmarks/solver_dc.py --model fashion-large``; ``--quick`` for a smoke run.
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

from benchmarks.trained_models import load_model, noises, reference, solve, standard_error, trajectory_error  # noqa: E402
from decoding.solvers import DCRatios, DCSolver, UniPC, make_timesteps, search_dc_ratios  # noqa: E402
from decoding.solvers.dc_solver import ratios_path  # noqa: E402

VARIANTS = {
    "greedy global": {"objective": "greedy", "start": None},
    "greedy local": {"objective": "greedy"},
    "final": {},
    "final reg=0.3": {"reg": 0.3},
    "final, compensated data step": {"compensate_final": True},
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large", choices=["fashion-large", "fashion-small", "empirical"])
    p.add_argument("--samples", type=int, default=256, help="held-out test noises (seed 0)")
    p.add_argument("--search-samples", type=int, nargs="+", default=[10, 64])
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 6, 8, 10, 15, 20])
    p.add_argument("--spacing", default="logsnr")
    p.add_argument("--order", type=int, default=2, help="base UniPC order")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--ref-steps", type=int, default=200)
    p.add_argument("--device", default="cpu", help="where the network runs (trajectories stay on the CPU in float64)")
    p.add_argument("--save", action="store_true", help="write the 'local' ratios of the largest search set into models/<model>/")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reset-nfe", type=int, nargs="+", default=None,
                   help="no search: set the ratios of these NFEs to 1 in the model's saved table (needs --reason)")
    p.add_argument("--reason", default="", help="with --reset-nfe: what was measured, kept in the table's info")
    args = p.parse_args(argv)
    if args.reset_nfe:
        return reset(args)
    if args.quick:
        args.model, args.samples, args.search_samples, args.nfe, args.ref_steps = "fashion-small", 4, [3], [5, 6], 20
    torch.set_num_threads(1)
    start = time.time()
    n_max = max(args.samples, max(args.search_samples))
    model, schedule = load_model(args.model, n_max, device=args.device)
    run_dtype = torch.float64 if args.model == "empirical" else torch.float32
    x = noises(args.samples, 0)
    ref = reference(model, schedule, x, args.ref_steps, (args.model, "float32", 0))[-1]
    grids = {n: make_timesteps(schedule, n, args.spacing) for n in args.nfe}
    rows: list[dict] = []
    base = UniPC(args.order)
    row = {"solver": f"UniPC-{args.order} bh2 (base)", "errors": {}, "se": {}}
    for n in args.nfe:
        out = solve(model, schedule, base, x, n, timesteps=grids[n], dtype=run_dtype)
        row["errors"][n], row["se"][n] = trajectory_error(out, ref), standard_error(out, ref)
    rows.append(row)
    print(f"{row['solver']:40s} " + " ".join(f"{row['errors'][n]:.4f}" for n in args.nfe), flush=True)
    saved = None
    for m in args.search_samples:
        xs = noises(m, 1)
        union = sorted({float(t) for g in grids.values() for t in g[:-1]}, reverse=True) + [schedule.t_end]
        traj = reference(model, schedule, xs, args.ref_steps, (args.model, "float32", 1), torch.tensor(union))
        at = dict(zip(union, traj, strict=True))
        for variant in args.variants:
            opts = dict(VARIANTS[variant])
            final = opts.pop("compensate_final", False)
            solver = DCSolver(order=args.order, compensate_final=final)
            row = {"solver": f"DC-Solver {variant}, {m} datapoints", "errors": {}, "se": {}, "ratios": {}}
            for n, g in grids.items():
                states = [at[float(t)] for t in g[:-1]] + [traj[-1]]
                ratios = search_dc_ratios(model, schedule, solver, g, xs.to(run_dtype), states, **opts)
                dc = DCSolver(ratios, order=args.order, compensate_final=final)
                out = solve(model, schedule, dc, x, n, timesteps=g, dtype=run_dtype)
                row["errors"][n], row["se"][n] = trajectory_error(out, ref), standard_error(out, ref)
                row["ratios"][n] = [round(r, 4) for r in ratios]
            rows.append(row)
            print(f"{row['solver']:40s} " + " ".join(f"{row['errors'][n]:.4f}" for n in args.nfe), flush=True)
            if variant == "final" and m == max(args.search_samples):
                saved = DCRatios(
                    {n: tuple(row["ratios"][n]) for n in args.nfe}, {n: tuple(grids[n].tolist()) for n in args.nfe},
                    args.order, "bh2", 2, False, schedule.key, args.spacing, args.model,
                    json.dumps({"datapoints": m, "spacing": args.spacing, "reference": f"RK4 {args.ref_steps} steps",
                                "search": "final-sample objective, 2 sweeps from 1, step 0.1, 10 golden", "date": "2026-12-06"}),
                )
    print(table(rows, args.nfe))
    for r in rows:
        for n, ratios in r.get("ratios", {}).items():
            print(f"{r['solver']}, NFE {n}: " + " ".join(f"{v:.3f}" for v in ratios))
    if args.save and saved is not None and args.model != "empirical":
        from decoding.models.image import resolve_checkpoint

        print(f"wrote {saved.save(ratios_path(resolve_checkpoint(args.model)))}")
    result = {
        "command": "python benchmarks/solver_dc.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        "rows": rows, "seconds": round(time.time() - start, 1),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    print(f"{time.time() - start:.0f} s")
    return result


def reset(args: argparse.Namespace) -> dict:
    """``--reset-nfe``: rewrite ``models/<model>/dc_solver_ratios.safetensors`` with unit ratios at those NFEs."""
    from decoding.models.image import resolve_checkpoint

    path = ratios_path(resolve_checkpoint(args.model))
    table = DCRatios.load(path).reset(args.reset_nfe, args.reason)
    table.save(path)
    print(f"wrote {path}: ratios of NFE {sorted(args.reset_nfe)} set to 1 ({args.reason})")
    return {"reset": sorted(args.reset_nfe), "reason": args.reason, "path": str(path)}


def table(rows: list[dict], nfes: list[int]) -> str:
    """Markdown: error (standard error) per NFE; the best of each column in bold."""
    best = {n: min(r["errors"][n] for r in rows) for n in nfes}
    lines = ["| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---|" * len(nfes)]
    for r in rows:
        cells = []
        for n in nfes:
            v = f"{r['errors'][n]:.4f} ({r['se'][n]:.4f})"
            cells.append(f"**{v}**" if r["errors"][n] == best[n] else v)
        lines.append(f"| {r['solver']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
