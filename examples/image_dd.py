"""Distilled Decoding (arXiv 2412.17153): an image AR teacher and its one- and two-step student, same classes.

    python examples/image_dd.py                     # the shipped teacher fashion-ar and student fashion-ar-dd
    python examples/image_dd.py --out dd.png --device cuda

One row per sampler (one image of each class): the teacher drawing its 49 tokens one network call at a
time (98 calls with its CFG 1.5), then the student mapping 49 noise vectors to all 49 tokens in one
call, and in two (it re-enters at token 24 with its own first tokens and the same noise). Prints each
row's calls per image and time.
"""

from __future__ import annotations

import argparse

import torch

import decoding as dc
from decoding.api.generation import make_grid


def main(argv: list[str] | None = None) -> list[dc.Generation]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default="fashion-ar")
    p.add_argument("--student", default="fashion-ar-dd")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="dd.png")
    a = p.parse_args(argv)
    classes = list(range(10))
    student = dc.load(a.student, a.device)
    rows = [("teacher (one call a token)", dc.generate(dc.load(a.teacher, a.device), n=10, class_label=classes,
                                                       seed=a.seed))]
    for steps in (1, 2):
        rows.append((f"student, {steps} step{'s' if steps > 1 else ''}",
                     dc.generate(student, n=10, class_label=classes, steps=steps, seed=a.seed)))
    for name, out in rows:
        print(f"{name:30s} NFE {max(out.nfe):4.0f}  {out.seconds:.2f} s")
    make_grid(torch.cat([out.uint8() for _, out in rows]), nrow=10, scale=2).save(a.out)
    print(f"wrote {a.out}: one row per sampler")
    return [out for _, out in rows]


if __name__ == "__main__":
    main()
