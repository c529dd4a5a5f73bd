"""Guidance-distilled students next to their CFG teacher (Meng et al., arXiv 2210.03142): same noise, same classes.

    python examples/image_distill.py                      # the shipped 4-, 2- and 1-step students
    python examples/image_distill.py --teacher fashion-large \\
        --students runs/distill/stage1 runs/distill/steps-4 runs/distill/steps-1 --scale 1.5 --out distill.png

One row per model (one image of each class): the teacher with CFG (two network calls per step,
DPM-Solver++ with ``--steps``), a stage-1 student with the same solver and steps (one call per
step), and each N-step student with its own N steps. Prints each row's NFE per image and time.
"""

from __future__ import annotations

import argparse

import torch

import decoding as dc
from decoding.api.generation import make_grid


def main(argv: list[str] | None = None) -> list[dc.Generation]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default="fashion-large")
    p.add_argument("--students", nargs="+", default=[f"fashion-large-distill-{n}" for n in (4, 2, 1)],
                   help="distilled student folders (default: the shipped ones)")
    p.add_argument("--scale", type=float, default=1.5, help="CFG scale (the students take it as their w = scale - 1)")
    p.add_argument("--steps", type=int, default=20, help="steps of the teacher and of a stage-1 student")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="distill.png")
    a = p.parse_args(argv)
    classes = list(range(10))
    guidance = [f"cfg:{a.scale:g}"]
    rows = [("teacher, CFG", dc.generate(dc.load(a.teacher, a.device), n=10, class_label=classes, steps=a.steps,
                                         solver="dpmpp_2m", guidance=guidance, seed=a.seed))]
    for folder in a.students:
        student = dc.load(folder, a.device)
        steps = a.steps if student.steps is None else student.steps
        rows.append((f"{folder} ({steps} step{'s' if steps > 1 else ''})", dc.generate(student, n=10, class_label=classes, steps=steps,
                                                             guidance=guidance, seed=a.seed)))
    for name, out in rows:
        print(f"{name:48s} NFE {max(out.nfe):4.0f}  {out.seconds:.2f} s")
    make_grid(torch.cat([out.uint8() for _, out in rows]), nrow=10, scale=2).save(a.out)
    print(f"wrote {a.out}: one row per model")
    return [out for _, out in rows]


if __name__ == "__main__":
    main()
