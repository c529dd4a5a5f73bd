"""Train a (tiny) class-conditional diffusion UNet on Fashion-MNIST, then sample from it.

    python examples/image_train.py --size tiny --steps 200 --out runs/fashion-tiny

The real models are trained by the same skeleton on a GPU, resumably:
``decoding train fashion-large --steps 20000 --minutes 9 --device cuda --compile`` (see ``decoding train --help``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import decoding as dc
from decoding.cli.train import train_main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="tiny", choices=["tiny", "small", "large"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit-data", type=int, default=None, help="train on the first N images only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="runs/fashion-{size}")
    a = p.parse_args()
    folder = Path(a.out.format(size=a.size))
    args = ["--steps", str(a.steps), "--batch-size", str(a.batch_size), "--lr", "1e-3", "--warmup", str(min(50, a.steps)),
            "--device", a.device, "--log-every", str(max(1, a.steps // 10)), "--val-limit", "500",
            "--checkpoint", str(folder / "checkpoint"), "--out", str(folder), "--no-progress"]
    if a.limit_data:
        args += ["--limit-data", str(a.limit_data)]
    train_main(f"fashion-{a.size}", args)
    samples = dc.generate(dc.load(folder, device=a.device), n=10, class_label=torch.arange(10), steps=10, seed=0)
    png, _ = samples.save(folder / "samples.png", nrow=10)
    print(f"trained {a.size} for {a.steps} steps -> {folder} (loss curve {folder / 'loss.png'}, samples {png})")


if __name__ == "__main__":
    main()
