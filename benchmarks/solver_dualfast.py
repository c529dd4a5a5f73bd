"""Does DualFast (arXiv 2506.13058) improve its base solver on the trained models?

:class:`decoding.solvers.DualFast` (``eps~_i = (1 + c_i) eps_i - c_i eps_tau``, ``c_i = c i / (N - 1)``,
``tau`` the previous or the first step) wrapped around DDIM, DPM-Solver++ 2M and UniPC-2, for
several ``c``, and the rule the project shipped before (``x0`` mixed with the first step's,
weight decaying over the grid), by trajectory error (:mod:`benchmarks.trained_models`).

Each variant is also compared with its base sample by sample (``vs_base``: mean per-sample
difference of the error, variant minus base, and its standard error; negative: DualFast is better).

Run: ``python benchmarks/solver_dualfast.py --model fashion-small``; ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import trained_models as tm  # noqa: E402
from benchmarks.solver_dc import table  # noqa: E402
from decoding.core.types import Prediction  # noqa: E402
from decoding.solvers import DDIM, DPMSolverPP, DualFast, UniPC  # noqa: E402
from decoding.solvers.base import StepInfo  # noqa: E402
from decoding.solvers.parameterization import data_prediction  # noqa: E402


@dataclass(frozen=True)
class X0MixingFirst:
    """The rule shipped before: ``x0~_i = x0_i + c_i (x0_i - x0_first)``, ``c_i`` decaying linearly to 0."""

    base: Any
    c: float
    stochastic = False

    @property
    def order(self) -> int:
        return self.base.order

    @property
    def min_steps(self) -> int:
        return self.base.min_steps

    def step(self, x: Tensor, pred: Prediction, info: StepInfo, history: Any, noise: Tensor | None = None):
        a_s, s_s, _ = info.s
        x0 = data_prediction(pred, x, a_s, s_s)
        inner, first = history if history is not None else (None, x0)
        t0, t_last, ti = float(info.ts[0]), float(info.ts[-2]), float(info.ts[info.i])
        c = self.c * (ti - t_last) / (t0 - t_last) if t0 != t_last else self.c
        out, inner = self.base.step(x, Prediction(x0=x0 + c * (x0 - first)), info, inner, noise)
        return out, (inner, first)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-small", choices=["fashion-large", "fashion-small", "empirical"])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 6, 8, 10])
    p.add_argument("--spacing", default="logsnr")
    p.add_argument("--c", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    p.add_argument("--tau", nargs="+", default=["previous", "first"], choices=["previous", "first"])
    p.add_argument("--bases", nargs="*", default=None, help="base solvers (default: all three)")
    p.add_argument("--old", action="store_true", help="also the x0-mixing rule shipped before")
    p.add_argument("--ref-steps", type=int, default=200)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.nfe, args.ref_steps, args.c = 4, [5, 6], 20, [0.3]
    torch.set_num_threads(1)
    start = time.time()
    model, schedule = tm.load_model(args.model, args.samples)
    run_dtype = torch.float64 if args.model == "empirical" else torch.float32
    x = tm.noises(args.samples, 0)
    ref = tm.reference(model, schedule, x, args.ref_steps, (args.model, "float32", 0))[-1]
    rows = []
    bases = {"DDIM": DDIM(), "DPM-Solver++ 2M": DPMSolverPP(2), "UniPC-2 bh2": UniPC(2)}
    for base_name, base in bases.items():
        if args.bases and base_name not in args.bases:
            continue
        variants = {base_name: base}
        for c in args.c:
            for tau in args.tau:
                variants[f"DualFast-{base_name}, tau={tau}, c={c}"] = DualFast(base, c, tau)
            if args.old:
                variants[f"{base_name} + x0 mixing (shipped before), c={c}"] = X0MixingFirst(base, c)
        base_errors = {}
        for name, solver in variants.items():
            row = {"solver": name, "errors": {}, "se": {}, "vs_base": {}}
            for n in args.nfe:
                out = tm.solve(model, schedule, solver, x, n, args.spacing, dtype=run_dtype)
                row["errors"][n], row["se"][n] = tm.trajectory_error(out, ref), tm.standard_error(out, ref)
                e = tm.per_sample_error(out, ref)
                if solver is base:
                    base_errors[n] = e
                else:
                    row["vs_base"][n] = tm.paired_difference(e, base_errors[n])
            rows.append(row)
            print(f"{name:55s} " + " ".join(f"{row['errors'][n]:.4f}" for n in args.nfe), flush=True)
    print(table(rows, args.nfe))
    print("\nminus the base solver, mean over samples of the per-sample difference (standard error)")
    for row in rows:
        if row["vs_base"]:
            print(f"| {row['solver']} | " + " | ".join(f"{m:+.4f} ({se:.4f})" for m, se in row["vs_base"].values()) + " |")
    out = {"command": "python benchmarks/solver_dualfast.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "rows": rows, "seconds": round(time.time() - start, 1)}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
