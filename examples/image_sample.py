"""Sample class-conditional Fashion-MNIST images from a trained model; save a PNG grid and its settings.

    python examples/image_sample.py --model fashion-large --class 7 --n 16 --solver dpmpp_2m --steps 10 --out grid.png

``--class -1`` gives one row per class. The same seed on the same device gives the same images.
"""

from __future__ import annotations

import argparse

import torch

import decoding as dc
from decoding.data.fashion_mnist import CLASSES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large", help="zoo name or checkpoint folder")
    p.add_argument("--class", dest="class_label", type=int, default=-1, help="class index, or -1 for every class")
    p.add_argument("--n", type=int, default=16, help="images (per class with --class -1)")
    p.add_argument("--solver", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="image_samples.png")
    a = p.parse_args()
    if a.class_label < 0:
        labels = torch.arange(len(CLASSES)).repeat_interleave(a.n)
        nrow = a.n
    else:
        labels, nrow = torch.full((a.n,), a.class_label), None
    model = dc.load(a.model, device=a.device)
    guidance = [dc.CFG(a.guidance)] if a.guidance != 1.0 else None
    out = dc.generate(model, n=labels.numel(), class_label=labels, solver=a.solver, steps=a.steps, guidance=guidance,
                      seed=a.seed)
    png, js = out.save(a.out, nrow=nrow)
    what = "every class" if a.class_label < 0 else f"class {a.class_label} ({CLASSES[a.class_label]})"
    print(f"{labels.numel()} images of {what}, {max(out.nfe):g} NFE each, {out.seconds:.2f} s -> {png}, {js}")


if __name__ == "__main__":
    main()
