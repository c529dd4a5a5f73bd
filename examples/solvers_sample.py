"""Sample Fashion-MNIST images with any solver from the exact (empirical) denoiser; save a PNG grid.

    python examples/solvers_sample.py --solver unipc_bh2 --steps 8 --out samples.png

The model is the posterior mean over a subset of the Fashion-MNIST training images (no trained
weights); every sample goes through the one decode loop with the continuous process.
"""

from __future__ import annotations

import argparse

import torch

from decoding.api.generation import make_grid
from decoding.denoisers import ClosedFormModel, fashion_mnist_data
from decoding.solvers.api import sample
from decoding.solvers.registry import SOLVERS
from decoding.solvers.schedules import DiscreteVPSchedule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--solver", default="dpmpp_2m", choices=sorted(set(SOLVERS) - {"dpm_solver_v3"}))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--spacing", default="time", choices=["time", "logsnr", "karras"])
    p.add_argument("--n-data", type=int, default=2000, help="training images in the empirical denoiser")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="solver_samples.png")
    args = p.parse_args()
    schedule = DiscreteVPSchedule()
    model = ClosedFormModel(fashion_mnist_data(args.n_data), schedule)
    res = sample(model, (args.samples, 1, 28, 28), args.solver, steps=args.steps, schedule=schedule,
                 spacing=args.spacing, seed=args.seed, dtype=torch.float64)
    images = ((res.x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    make_grid(images, scale=2).save(args.out)
    print(f"{args.solver}: {args.samples} images in {res.total_nfe:.0f} NFE ({res.seconds:.2f}s) -> {args.out}")


if __name__ == "__main__":
    main()
