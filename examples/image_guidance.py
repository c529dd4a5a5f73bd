"""Guidance methods as wrappers, on any solver: CFG (+ rescale, interval), CFG++, PAG, AGD and T-Stitch.

    python examples/image_guidance.py --model fashion-large --small fashion-small --steps 10 --out guidance.png

Each row of the grid is one method on the same noise and class labels (one of each class); the
NFE column says how many model calls each image cost (CFG / CFG++ / PAG: 2 per step in one batched
call, CFG + PAG: 3, T-Stitch and AGD: 1). The AGD row appears when the model has trained adapters
(``--adapters FOLDER``, default ``models/<model>-agd``: ``decoding train agd-fashion``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import decoding as dc
from decoding.api.generation import make_grid
from decoding.models.adapters import default_adapter_folder

METHODS = {
    "conditional": [],
    "CFG 2": ["cfg:2"],
    "CFG 3, rescale 0.7": ["cfg:3,rescale=0.7"],
    "CFG 3 inside t in [100, 700]": ["cfg:3,interval=100-700"],
    "CFG++ 0.6": ["cfgpp:0.6"],
    "PAG 2": ["pag:2"],
    "CFG 2 + PAG 1.5": ["cfg:2", "pag:1.5"],
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large")
    p.add_argument("--small", default="fashion-small", help="the small model of T-Stitch ('' to skip it)")
    p.add_argument("--adapters", default=None, help="AGD adapter folder (default models/<model>-agd if it exists; '' to skip)")
    p.add_argument("--solver", default="ddim")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="guidance.png")
    a = p.parse_args(argv)
    model = dc.load(a.model, device=a.device)
    methods = dict(METHODS)
    adapters = Path(a.adapters) if a.adapters else (default_adapter_folder(a.model) if a.adapters is None else None)
    if adapters is not None and adapters.is_dir():
        methods["AGD 2"] = [dc.AGD(2.0, adapters=str(adapters))]
    if a.small:
        methods["T-Stitch 0.4 with " + a.small] = [dc.Stitch(a.small, 0.4)]
    rows = []
    for name, guidance in methods.items():
        out = dc.generate(model, n=10, class_label=list(range(10)), solver=a.solver, steps=a.steps,
                          guidance=guidance, seed=a.seed)
        rows.append(out.uint8())
        print(f"{name:32s} NFE {max(out.nfe):4.0f}  {out.seconds:.2f} s")
    make_grid(torch.cat(rows), nrow=10, scale=2).save(a.out)
    print(f"wrote {a.out}: one row per method")


if __name__ == "__main__":
    main()
