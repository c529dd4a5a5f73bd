"""Where the image decode loop waits for the GPU, and its wall time against a bare loop.

    python benchmarks/image_sync_profile.py --model models/fashion-large --batch 256 --nfe 50

For the eager and the ``torch.compile`` (default mode) network, runs the engine
(:func:`decoding.decode`, DPM-Solver++ 2M) and the bare PyTorch loop of ``image_throughput.py`` on
the same network, noise and grid (3 warm-up runs, median of 5), then runs each once more under
``torch.cuda.set_sync_debug_mode`` and prints every source line that synchronised with the GPU
and how often. A loop that synchronises every step cannot queue the next network call while the
GPU runs the current one.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import image_throughput as it  # noqa: E402

from decoding.core.loop import decode  # noqa: E402
from decoding.core.syncs import count_syncs  # noqa: E402
from decoding.models.image import TRAIN_SCHEDULE, ImageDiffusionModel, schedule_from_config  # noqa: E402
from decoding.processes.continuous import ContinuousProcess  # noqa: E402
from decoding.solvers.dpm_solver_pp import DPMSolverPP  # noqa: E402
from decoding.solvers.timesteps import make_timesteps  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/fashion-large")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--nfe", type=int, default=50)
    p.add_argument("--attention", default="sdpa")
    a = p.parse_args(argv)
    dev = torch.device("cuda")
    net, prediction = it.build_net(a, dev, torch.bfloat16)
    net.set_attention_backend(a.attention)
    sched = schedule_from_config(TRAIN_SCHEDULE)
    g = torch.Generator(device=dev).manual_seed(0)
    noise = torch.randn(a.batch, 1, 28, 28, generator=g, device=dev)
    labels = torch.arange(a.batch, device=dev) % net.cfg.num_classes
    ts = make_timesteps(sched, a.nfe, "logsnr")
    for compiled in (False, True):
        model = ImageDiffusionModel(net, sched, prediction)
        model.forward = it.maybe_compile(net, compiled, "default")
        peer = it.maybe_compile(copy.deepcopy(net), compiled, "default")
        proc = ContinuousProcess(sched, DPMSolverPP(order=2), timesteps=ts)
        runs = {
            "engine": lambda m=model, pr=proc: decode(m, pr, noise, steps=a.nfe, generator=g, cond=labels).x,
            "plain": lambda r=peer: it.run_plain(r, torch.bfloat16, prediction, ts, noise, labels),
        }
        for name, fn in runs.items():
            for _ in range(3):
                fn()
            walls = []
            for _ in range(5):
                torch.cuda.synchronize()
                t = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                walls.append(time.perf_counter() - t)
            wall = sorted(walls)[2]
            print(f"compile={compiled} {name}: median wall {wall * 1e3:.1f} ms ({a.batch / wall:.0f} img/s); "
                  f"syncs {count_syncs(fn)}", flush=True)


if __name__ == "__main__":
    main()
