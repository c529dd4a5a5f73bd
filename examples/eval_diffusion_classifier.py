"""Classify Fashion-MNIST test images with a class-conditional diffusion model (Li et al., arXiv 2303.16203).

Each image is noised n times; the class whose conditional model predicts the noise best wins.
Without a trained checkpoint this uses the exact per-class Gaussian model fitted to the training
set; pass --checkpoint fashion-small (a models/ name or folder) for a trained UNet.

    python examples/eval_diffusion_classifier.py --images 200 --samples 20
    python examples/eval_diffusion_classifier.py --checkpoint fashion-small --device cuda
"""

from __future__ import annotations

import argparse

import torch

from decoding.data.fashion_mnist import CLASSES, load_fashion_mnist
from decoding.evals.diffusion_classifier import denoising_errors, predictions_by_n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=200, help="first N test images")
    p.add_argument("--samples", type=int, default=20, help="noise draws per image")
    p.add_argument("--checkpoint", default=None, help="a trained UNet (default: the exact Gaussian model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    if args.checkpoint:
        from decoding.models.image import load_image_model

        model = load_image_model(args.checkpoint, args.device)
    else:
        from decoding.evals.closed_form import fashion_class_gaussians

        model = fashion_class_gaussians(min_var=0.01).to(args.device)
    x, y = load_fashion_mnist("test")
    images = (x[: args.images].float()[:, None] / 127.5 - 1).to(args.device)
    gen = torch.Generator(args.device).manual_seed(args.seed)
    errors = denoising_errors(model, images, args.samples, gen, t_range=(0.05, 0.95))
    ns = sorted({1, 2, 5, 10, args.samples} & set(range(1, args.samples + 1)))
    preds = predictions_by_n(errors, ns)
    labels = y[: args.images].tolist()
    for n in ns:
        acc = sum(int(a == b) for a, b in zip(preds[n], labels, strict=True)) / len(labels)
        print(f"n = {n:>4} noise samples: accuracy {acc:.3f}")
    print(f"first image: predicted {CLASSES[preds[ns[-1]][0]]!r}, true {CLASSES[labels[0]]!r}")


if __name__ == "__main__":
    main()
