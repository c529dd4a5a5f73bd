"""Solver error against a reference at NFE 5, 6, 8, 10, 20 on the empirical Fashion-MNIST denoiser.

The model is the exact posterior mean of a fixed subset of Fashion-MNIST training images
(:func:`decoding.denoisers.fashion_mnist_data`), the schedule diffusers' linear DDPM betas, the grid
uniform in log-SNR (``--spacing``). The reference is a 1000-step RK4 solution of the
probability-flow ODE from the same noise (:func:`decoding.solvers.reference.reference_solve`);
the error is the RMSE per pixel (pixels in [-1, 1]) of the final samples.

- DPM-Solver-v3 uses statistics computed on this model (:func:`decoding.solvers.ems.compute_ems`,
  saved as safetensors in ``--out``), from noise disjoint from the test noise.
- DC-Solver's ratios are searched per NFE against the reference trajectory of 10 other
  datapoints (as in the paper); "CPR, unseen NFE" predicts each NFE's ratios from a cascade
  polynomial regression fitted on the other four NFEs only.
- DualFast wraps DDIM, DPM-Solver++(2M) and UniPC with ``c`` (``--dualfast-c``); a sweep over ``c``
  is printed too.
- Peer: diffusers' DPMSolverMultistepScheduler and UniPCMultistepScheduler (default configs) on
  their own timesteps, against our solvers on the same timesteps; the ratio of errors is printed.

Run: ``python benchmarks/solver_error.py`` (about 5-10 minutes on 2 CPU cores; ``--quick`` for a smoke run).
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

from decoding import decode  # noqa: E402
from decoding.denoisers import ClosedFormModel, fashion_mnist_data  # noqa: E402
from decoding.processes.continuous import ContinuousProcess  # noqa: E402
from decoding.solvers import (  # noqa: E402
    DDIM,
    CascadePolynomialRegression,
    DCSolver,
    DiscreteVPSchedule,
    DPMSolverPP,
    DPMSolverV3,
    DualFast,
    UniPC,
    compute_ems,
    make_timesteps,
    search_dc_ratios,
)
from decoding.solvers.ems import ems_path  # noqa: E402
from decoding.solvers.parameterization import bcast  # noqa: E402
from decoding.solvers.reference import reference_solve  # noqa: E402


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


def nearest(data, x: torch.Tensor) -> torch.Tensor:
    """Index of the nearest training image of every sample ``(B,)``."""
    return torch.cdist(x.reshape(x.shape[0], -1), data.points).argmin(1)


def run(model, schedule, solver, x, steps, spacing, timesteps=None) -> torch.Tensor:
    proc = ContinuousProcess(schedule, solver, spacing=spacing, timesteps=timesteps, dtype=torch.float64)
    return decode(model, proc, x, steps=steps).x


def peer_rows(model, data, schedule, x, ref, nfes) -> list[dict]:
    """diffusers' schedulers vs ours on diffusers' own timesteps."""
    try:
        from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
    except ImportError:
        print("diffusers not installed: peer rows skipped")
        return []

    def eps(xx: torch.Tensor, t: int) -> torch.Tensor:
        tt = torch.tensor(float(t), dtype=torch.float64)
        a, s = schedule.alpha(tt), schedule.sigma(tt)
        return (xx - bcast(a, xx) * data.denoise(xx, a, s)) / bcast(s, xx)

    rows = []
    for label, make, ours in (
        ("DPMSolverMultistep (2M)", DPMSolverMultistepScheduler, DPMSolverPP(2)),
        ("UniPCMultistep (bh2)", UniPCMultistepScheduler, UniPC(2)),
    ):
        row = {"solver": f"diffusers {label}", "errors": {}, "ours": {}}
        for n in nfes:
            sched = make()
            sched.set_timesteps(n)
            xx = x.clone()
            for t in sched.timesteps:
                xx = sched.step(eps(xx, int(t)), t, xx).prev_sample
            ts = [float(t) for t in sched.timesteps] + [schedule.t_end]
            row["errors"][n] = rmse(xx, ref)
            row["ours"][n] = rmse(run(model, schedule, ours, x, n, "logsnr", ts), ref)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-data", type=int, default=2000, help="Fashion-MNIST training images in the empirical denoiser")
    p.add_argument("--samples", type=int, default=64, help="test samples (noises)")
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 6, 8, 10, 20])
    p.add_argument("--ref-steps", type=int, default=1000, help="RK4 steps of the reference")
    p.add_argument("--spacing", default="logsnr", choices=["logsnr", "time", "karras"])
    p.add_argument("--ems-samples", type=int, default=128)
    p.add_argument("--ems-knots", type=int, default=120)
    p.add_argument("--ems-probes", type=int, default=2)
    p.add_argument("--dualfast-c", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: $DECODING_CACHE/solvers)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    p.add_argument("--replot", type=Path, default=None, help="only redraw the PNG of a saved solver_error.json")
    args = p.parse_args(argv)
    if args.replot is not None:
        print(f"wrote {replot(args.replot)}")
        return {}
    if args.quick:
        args.n_data, args.samples, args.nfe, args.ref_steps = 200, 8, [5, 6], 100
        args.ems_samples, args.ems_knots = 16, 20
    torch.set_num_threads(args.threads)
    if args.out is None:
        from decoding.cache import cache_dir

        args.out = cache_dir("solvers")
    start = time.time()
    schedule = DiscreteVPSchedule()
    data = fashion_mnist_data(args.n_data, seed=0)
    model = ClosedFormModel(data, schedule)
    shape = (1, 28, 28)
    x = torch.randn(args.samples, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t_max = schedule.t_max
    print(f"reference: RK4 {args.ref_steps} steps on {args.samples} samples ...", flush=True)
    ref = reference_solve(model, schedule, x, [t_max, schedule.t_end], steps=args.ref_steps)[-1]

    print("DPM-Solver-v3 statistics ...", flush=True)
    ems = compute_ems(model, schedule, shape, n_samples=args.ems_samples, knots=args.ems_knots,
                      probes=args.ems_probes, generator=torch.Generator().manual_seed(2),
                      model_name=f"fashion-mnist-empirical-{args.n_data}")
    ems_file = ems.save(ems_path(args.out / f"fashion_mnist_empirical_{args.n_data}"))

    print("DC-Solver ratio search on 10 datapoints ...", flush=True)
    x_train = torch.randn(10, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grids = {n: make_timesteps(schedule, n, args.spacing) for n in args.nfe}
    union = sorted({float(t) for g in grids.values() for t in g[:-1]}, reverse=True) + [schedule.t_end]
    traj = reference_solve(model, schedule, x_train, union, steps=args.ref_steps)
    at = {t: s for t, s in zip(union, traj, strict=True)}
    ratios = {}
    for n, g in grids.items():
        states = [at[float(t)] for t in g[:-1]] + [traj[-1]]
        ratios[n] = search_dc_ratios(model, schedule, DCSolver(), g, x_train, states)
    unseen = {}
    for n in args.nfe:
        others = [(m, 0.0, ratios[m]) for m in args.nfe if m != n]
        unseen[n] = CascadePolynomialRegression((2, 0, 2 if len(others) > 2 else 0)).fit(others).predict(n) if others else ratios[n]

    c = args.dualfast_c
    solvers = {
        "DDIM": lambda n: DDIM(),
        "DPM-Solver++(2M)": lambda n: DPMSolverPP(2),
        "DPM-Solver++(3M)": lambda n: DPMSolverPP(3),
        "UniPC-2 bh1": lambda n: UniPC(2, "bh1"),
        "UniPC-2 bh2": lambda n: UniPC(2, "bh2"),
        "UniPC-3 bh2": lambda n: UniPC(3, "bh2"),
        "DPM-Solver-v3 (2)": lambda n: DPMSolverV3(ems, 2),
        "DPM-Solver-v3 (3)": lambda n: DPMSolverV3(ems, 3),
        "DC-Solver (searched)": lambda n: DCSolver(ratios[n]),
        "DC-Solver (CPR, unseen NFE)": lambda n: DCSolver(unseen[n]),
        f"DualFast-DDIM (c={c})": lambda n: DualFast(DDIM(), c),
        f"DualFast-DPM-Solver++(2M) (c={c})": lambda n: DualFast(DPMSolverPP(2), c),
        f"DualFast-UniPC-2 (c={c})": lambda n: DualFast(UniPC(2), c),
    }
    rows = []
    ref_nn = nearest(data, ref)
    for name, make in solvers.items():
        errs, miss = {}, {}
        for n in args.nfe:
            out = run(model, schedule, make(n), x, n, args.spacing)
            errs[n], miss[n] = rmse(out, ref), float((nearest(data, out) != ref_nn).double().mean())
        rows.append({"solver": name, "errors": errs, "other_image": miss})
        print(f"  {name:36s} " + " ".join(f"{errs[n]:.4f} ({miss[n]:.0%})" for n in args.nfe), flush=True)
    sweep = []
    for base_name, base in (("DDIM", DDIM()), ("DPM-Solver++(2M)", DPMSolverPP(2)), ("UniPC-2 bh2", UniPC(2))):
        for cc in (0.1, 0.3, 0.5, 1.0):
            errs = {n: rmse(run(model, schedule, DualFast(base, cc), x, n, args.spacing), ref) for n in args.nfe}
            sweep.append({"solver": f"DualFast-{base_name} c={cc}", "errors": errs})
    peers = peer_rows(model, data, schedule, x, ref, args.nfe)

    header = "| solver | " + " | ".join(f"NFE {n}" for n in args.nfe) + " |"
    sep = "|---|" + "---|" * len(args.nfe)
    print("\n" + header + "\n" + sep)
    for r in rows:
        print(f"| {r['solver']} | " + " | ".join(f"{r['errors'][n]:.4f} ({r['other_image'][n]:.0%})" for n in args.nfe) + " |")
    print("\n" + header + "\n" + sep)
    for r in sweep:
        print(f"| {r['solver']} | " + " | ".join(f"{r['errors'][n]:.4f}" for n in args.nfe) + " |")
    if peers:
        print("\n| peer (diffusers timesteps) | " + " | ".join(f"NFE {n}" for n in args.nfe) + " |\n" + sep)
        for r in peers:
            print(f"| {r['solver']} | " + " | ".join(f"{r['errors'][n]:.4f}" for n in args.nfe) + " |")
            print("| ours on the same timesteps | " + " | ".join(f"{r['ours'][n]:.4f}" for n in args.nfe) + " |")
            print("| ratio ours / diffusers | " + " | ".join(
                f"{r['ours'][n] / r['errors'][n]:.4f}" if r["errors"][n] > 0 else ("1 (both 0)" if r["ours"][n] == 0 else "inf")
                for n in args.nfe) + " |")
    result = {
        "command": "python benchmarks/solver_error.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}",
        "rows": rows, "dualfast_sweep": sweep, "peers": peers,
        "dc_ratios": {n: list(r) for n, r in ratios.items()}, "ems_file": str(ems_file),
        "seconds": time.time() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "solver_error.json").write_text(json.dumps(result, indent=1))
    _plot(rows, args.nfe, args.out / "solver_error.png", f"Empirical Fashion-MNIST denoiser, {args.spacing} grid")
    print(f"\nwrote {args.out / 'solver_error.json'} and solver_error.png in {time.time() - start:.0f}s")
    return result


def _plot(rows: list[dict], nfes: list[int], path: Path, title: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    floor = 1e-2
    styles = ["-", "--", ":", "-."]
    markers = "os^vDPX*<>hp8"
    for k, r in enumerate(rows):
        errs = [max(float(r["errors"][n] if n in r["errors"] else r["errors"][str(n)]), floor) for n in nfes]
        ax.plot(nfes, errs, marker=markers[k % len(markers)], linestyle=styles[k % len(styles)], label=r["solver"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(nfes, [str(n) for n in nfes])
    ax.set_xlabel("NFE")
    ax.set_ylabel(f"RMSE vs RK4 reference (pixels in [-1, 1]; 0 drawn at {floor})")
    ax.set_title(title or "Empirical Fashion-MNIST denoiser, linear DDPM schedule")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def replot(json_path: Path) -> Path:
    """Redraw the PNG of a saved result (``python benchmarks/solver_error.py --replot results.json``)."""
    result = json.loads(Path(json_path).read_text())
    nfes = [int(n) for n in result["settings"]["nfe"]]
    out = Path(json_path).with_suffix(".png")
    _plot(result["rows"], nfes, out, f"Empirical Fashion-MNIST denoiser, {result['settings']['spacing']} grid")
    return out


if __name__ == "__main__":
    main()
