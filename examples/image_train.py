"""Train a (tiny) class-conditional diffusion UNet on Fashion-MNIST, then sample from it.

    python examples/image_train.py --size tiny --steps 200 --out runs/fashion-tiny

The real models are trained the same way on a GPU:
``python -m decoding.train.image --size large small --minutes 7 --device cuda``.
"""

from __future__ import annotations

import argparse

import torch

import decoding as dc
from decoding.train.image import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="tiny", choices=["tiny", "small", "large"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit-data", type=int, default=None, help="train on the first N images only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="runs/fashion-{size}")
    a = p.parse_args()
    cfg = TrainConfig(sizes=[a.size], out=a.out, steps=a.steps, minutes=None, batch_size=a.batch_size, lr=1e-3,
                      warmup=min(50, a.steps), device=a.device, limit_data=a.limit_data, log_every=max(1, a.steps // 10))
    folder = train(cfg)[a.size]
    samples = dc.generate(dc.load(folder, device=a.device), n=10, class_label=torch.arange(10), steps=10, seed=0)
    png, _ = samples.save(folder / "samples.png", nrow=10)
    print(f"trained {a.size} for {a.steps} steps -> {folder} (loss curve {folder / 'loss.png'}, samples {png})")


if __name__ == "__main__":
    main()
