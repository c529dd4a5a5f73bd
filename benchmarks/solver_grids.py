"""Trajectory error of the multistep solvers on the trained models across time grids and final-step rules.

For every solver (DDIM, DPM-Solver++ 2M / 3M with both second-derivative coefficients, UniPC-2 bh1 / bh2,
UniPC-3), every spacing and ``lower_order_final`` on and off: the mean per-sample RMSE of the final
images against an RK4 reference from the same noises (:mod:`benchmarks.trained_models`), at each
NFE. ``--model empirical`` runs the same table on the exact denoiser of 2,000 training images under
the same noise schedule (no network error), which separates what the grid does from what the
network does. ``--dtype`` picks the network's arithmetic (float32, float64, bfloat16); the samples
and the solver run in float64 when ``--dtype float64``, else in float32.

Run: ``python benchmarks/solver_grids.py --model fashion-large --samples 256`` (CPU: about
``samples * (4 * ref_steps + rows * sum(nfe))`` network calls, 27 ms each for fashion-large on one
core); ``--quick`` for a smoke run.

Every row is also compared with the same solver on its ``default_spacing``
(:func:`decoding.solvers.timesteps.default_spacing`) sample by sample: the ``paired`` entry of the
JSON and the second table give the mean per-sample difference of the error (this grid minus the
default one; negative: this grid is better) and its standard error, which is much smaller than the
standard error of either mean because both grids start from the same noises.
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

from benchmarks.trained_models import (  # noqa: E402
    load_model,
    noises,
    paired_difference,
    per_sample_error,
    reference,
    solve,
    standard_error,
    trajectory_error,
)
from decoding.solvers import DDIM, DPMSolverPP, UniPC  # noqa: E402
from decoding.solvers.timesteps import LAMBDA_FLOOR, SPACINGS, default_spacing, make_timesteps  # noqa: E402


def solver_rows(lof: bool) -> dict[str, object]:
    """The solvers of the table with ``lower_order_final=lof``.

    On grids that end at data the rule changes only third-order solvers (the step onto data is
    first order anyway, the one before it second order at most), so ``lof=False`` lists those.
    """
    rows: dict[str, object] = {}
    if lof:
        rows["DDIM"] = DDIM()
        rows["DPM-Solver++ 2M"] = DPMSolverPP(2)
    tag = "" if lof else ", LOF off"
    rows[f"DPM-Solver++ 3M (exact D2){tag}"] = DPMSolverPP(3, third_order="taylor", lower_order_final=lof)
    rows[f"DPM-Solver++ 3M (diffusers D2){tag}"] = DPMSolverPP(3, third_order="dpmsolver", lower_order_final=lof)
    if lof:
        rows["UniPC-2 bh1"] = UniPC(2, "bh1")
        rows["UniPC-2 bh2"] = UniPC(2, "bh2")
    rows[f"UniPC-3 bh2{tag}"] = UniPC(3, "bh2", lower_order_final=lof)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large", choices=["fashion-large", "fashion-small", "empirical"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the test noises")
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 6, 8, 10, 15, 20])
    p.add_argument("--spacing", nargs="+", default=list(SPACINGS),
                   help=f"grids: {', '.join(SPACINGS)}; 'logsnr_trunc@L' sets the lambda floor L")
    p.add_argument("--ref-steps", type=int, default=200)
    p.add_argument("--lof", choices=["on", "off", "both"], default="both", help="lower_order_final rows")
    p.add_argument("--only", nargs="*", default=None, help="substrings: keep the rows whose name contains one")
    p.add_argument("--first", type=int, default=None, help="score only the first N test samples (of --samples)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.nfe, args.ref_steps, args.model = 4, [5, 6], 20, "fashion-small"
    torch.set_num_threads(1)
    start = time.time()
    model, schedule = load_model(args.model, args.samples, args.dtype)
    x = noises(args.samples, args.seed)
    run_dtype = torch.float64 if args.dtype == "float64" or args.model == "empirical" else torch.float32
    ref = reference(model, schedule, x, args.ref_steps, (args.model, args.dtype, args.seed))[-1]
    if args.first:
        x, ref = x[: args.first], ref[: args.first]
    rows: dict[str, object] = {}
    for lof in {"on": [True], "off": [False], "both": [True, False]}[args.lof]:
        rows.update(solver_rows(lof))
    if args.only:
        rows = {k: v for k, v in rows.items() if any(s in k for s in args.only)}
    results = []
    for name, solver in rows.items():
        per_sample: dict[tuple[str, int], torch.Tensor] = {}
        first_row = len(results)
        for spacing in args.spacing:
            errs, ses = {}, {}
            for n in args.nfe:
                if n < solver.min_steps:
                    continue
                name_, _, floor = spacing.partition("@")
                ts = make_timesteps(schedule, n, name_, lambda_floor=float(floor) if floor else LAMBDA_FLOOR)
                out = solve(model, schedule, solver, x, n, timesteps=ts, dtype=run_dtype)
                errs[n], ses[n] = trajectory_error(out, ref), standard_error(out, ref)
                per_sample[spacing, n] = per_sample_error(out, ref)
            results.append({"solver": name, "spacing": spacing, "errors": errs, "se": ses})
            print(f"{name:40s} {spacing:7s} " + " ".join(f"{errs[n]:.4f}" for n in errs), flush=True)
        for r in results[first_row:]:
            r["default"], r["paired"] = default_spacing(solver), paired_differences(per_sample, r["spacing"], default_spacing(solver))
    print(table(results, args.nfe))
    print("\ndifference to the solver's default grid, mean over samples (standard error)")
    print(paired_table(results, args.nfe))
    out = {
        "command": "python benchmarks/solver_grids.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        "results": results,
        "seconds": round(time.time() - start, 1),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    print(f"{time.time() - start:.0f} s")
    return out


def paired_differences(per_sample: dict[tuple[str, int], torch.Tensor], spacing: str, base: str) -> dict[int, list[float]]:
    """``{nfe: [mean, standard error]}`` of the per-sample error on ``spacing`` minus that on ``base``.

    Empty where ``base`` was not run (or for ``base`` itself).
    """
    return {n: paired_difference(e, per_sample[base, n]) for (sp, n), e in per_sample.items()
            if sp == spacing and spacing != base and (base, n) in per_sample}


def paired_table(results: list[dict], nfes: list[int]) -> str:
    """Markdown of the ``paired`` entries: one row per (solver, non-default grid)."""
    lines = ["| solver (default grid) | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|---|" + "---|" * len(nfes)]
    for r in results:
        if not r.get("paired"):
            continue
        cells = [f"{r['paired'][n][0]:+.4f} ({r['paired'][n][1]:.4f})" if n in r["paired"] else "-" for n in nfes]
        lines.append(f"| {r['solver']} ({r['default']}) | {r['spacing']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: list[dict], nfes: list[int]) -> str:
    """Markdown: one row per (solver, spacing); the best cell of each NFE in bold."""
    best = {n: min((r["errors"][n] for r in results if n in r["errors"]), default=None) for n in nfes}
    lines = ["| solver | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|---|" + "---|" * len(nfes)]
    for r in results:
        cells = []
        for n in nfes:
            if n not in r["errors"]:
                cells.append("-")
                continue
            v = f"{r['errors'][n]:.4f}"
            cells.append(f"**{v}**" if r["errors"][n] == best[n] else v)
        lines.append(f"| {r['solver']} | {r['spacing']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
