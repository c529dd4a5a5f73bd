"""Host time per image-diffusion step of ``decode()`` with the network replaced by ``zeros_like``.

    python benchmarks/image_host_overhead.py [--src PATH]

What the loop, the model wrapper (labels, ``lambda``, prediction conversion) and DPM-Solver++ 2M cost
on the host per step at batch 1 (NFE 10): at small batch on a GPU this is the floor under the
step time once the network is a CUDA graph. ``--src`` imports ``decoding`` from another source tree
(e.g. ``git archive main decoding | tar -x -C /tmp/main`` and ``--src /tmp/main``) to compare.
Prints the minimum and median over 5 timings of 10 runs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.src))
    import torch

    from decoding.core.loop import decode
    from decoding.models.image import SIZES, TRAIN_SCHEDULE, ImageDiffusionModel, schedule_from_config
    from decoding.nn.unet import UNet
    from decoding.processes.continuous import ContinuousProcess
    from decoding.solvers.dpm_solver_pp import DPMSolverPP

    schedule = schedule_from_config(TRAIN_SCHEDULE)
    model = ImageDiffusionModel(UNet(copy.deepcopy(SIZES["tiny"])).eval(), schedule, "v")
    model.forward = lambda x, lam, y: torch.zeros_like(x)  # no network: host time only
    noise = torch.randn(1, 1, 28, 28)

    def run() -> None:
        decode(model, ContinuousProcess(schedule, DPMSolverPP(order=2)), noise, steps=10, cond=3, seed=0)

    run()
    per_step = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(args.runs):
            run()
        per_step.append((time.perf_counter() - start) / (10 * args.runs) * 1e6)
    out = {"min_us": min(per_step), "median_us": statistics.median(per_step), "src": str(args.src)}
    print(f"host time per step: min {out['min_us']:.0f} us, median {out['median_us']:.0f} us ({args.src})")
    return out


if __name__ == "__main__":
    main()
