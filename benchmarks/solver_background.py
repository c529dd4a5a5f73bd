"""Why trajectory error and FID disagree at NFE 5-6 on Fashion-MNIST: the black background.

    python benchmarks/solver_background.py --model fashion-large --n 128 --nfe 5 6 \\
        --out benchmarks/results/solver_background_cpu.json

Samples ``--n`` class-balanced images (labels ``i mod 10``, seed 0: the same starting noises for
every config) with each solver through ``decoding.generate`` on its default grid, and a 50-step
UniPC-2 reference from the same noises. Per config:

- ``rmse``: mean per-image RMSE against the reference (images in [-1, 1]), what the DC-Solver
  ratio search minimises;
- ``black_bg``: of the reference's background pixels (<= -0.99, about half of every image), the
  fraction that is exactly black (0) in the 8-bit sample, i.e. how clean the background comes out;
- ``bg_dev``: the mean distance of those pixels from black, in [-1, 1] units;
- ``laplacian``: the mean squared Laplacian over the reference's (sharpness; 1 = as sharp).

DC-Solver runs with the searched ratio table given by ``--dc-ratios`` (the shipped table has NFE 5
and 10 reset to 1, where it is UniPC-2).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import decoding as dc  # noqa: E402

SOLVERS = ["dpmpp_2m", "dpmpp_3m", "unipc_bh2", "dpm_solver_v3", "dc_solver", "dualfast_unipc"]


def laplacian_energy(x: torch.Tensor) -> float:
    """Mean squared 5-point Laplacian of ``x`` ``(B, C, H, W)``."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype).view(1, 1, 3, 3)
    return F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k).pow(2).mean().item()


def measures(x: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """The measures of the module docstring for samples ``x`` against ``ref`` (both ``(B, C, H, W)`` in [-1, 1])."""
    bg = ref <= -0.99
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round()
    return {
        "rmse": round((x - ref).pow(2).mean(dim=(1, 2, 3)).sqrt().mean().item(), 4),
        "black_bg": round((u8[bg] == 0).float().mean().item(), 4),
        "bg_dev": round((x[bg] + 1).mean().item(), 4),
        "laplacian": round(laplacian_energy(x) / laplacian_energy(ref), 4),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 6])
    p.add_argument("--solvers", nargs="+", default=SOLVERS)
    p.add_argument("--dc-ratios", default=None, help="DC-Solver ratio table (default: the model's shipped one)")
    p.add_argument("--ref-steps", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    start = time.time()
    handle = dc.load(args.model, args.device)
    labels = torch.arange(args.n) % 10

    def sample(solver: str, steps: int) -> torch.Tensor:
        opts = {"solver_options": {"ratios": args.dc_ratios}} if solver == "dc_solver" and args.dc_ratios else {}
        g = dc.generate(handle, n=args.n, class_label=labels, solver=solver, steps=steps, seed=0, batch_size=args.n, **opts)
        return g.images.float().cpu()

    ref = sample("unipc_bh2", args.ref_steps)
    rows = []
    for nfe in args.nfe:
        for solver in args.solvers:
            row = {"solver": solver, "nfe": nfe, **measures(sample(solver, nfe), ref)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "command": "python benchmarks/solver_background.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, torch {torch.__version__}",
        "reference": f"unipc_bh2, {args.ref_steps} steps", "n": args.n, "rows": rows, "seconds": round(time.time() - start, 1),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
