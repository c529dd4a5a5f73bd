"""Measure sample quality: FID against Fashion-MNIST statistics and class accuracy with our classifier.

    python examples/image_quality.py --model fashion-large --n 1000 --steps 10 --device cuda

FID of a few hundred samples is biased upwards: compare values only at equal ``--n``. The cards in
models/ report FID of 10,000 samples (``python -m decoding.evals.fid model ...``).
"""

from __future__ import annotations

import argparse

import torch

import decoding as dc
from decoding.evals.classifier import class_accuracy, load_classifier
from decoding.evals.fid import fid_small


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--solver", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--reference", default=None, help="FID statistics (default: models/fid/fashion_mnist_train.safetensors)")
    p.add_argument("--classifier", default="fashion-classifier")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    labels = torch.arange(a.n) % 10
    out = dc.generate(dc.load(a.model, device=a.device), n=a.n, class_label=labels, solver=a.solver, steps=a.steps, seed=0)
    acc = class_accuracy(load_classifier(a.classifier, a.device), out.images, labels)
    small = fid_small(out.images, a.reference, a.device)
    print(f"{a.model} {a.solver} NFE {max(out.nfe):g}: FID {small['fid']:.2f} (n={small['n']}), class accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
