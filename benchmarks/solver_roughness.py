"""How smooth is the data prediction along the ODE trajectories of a model? (the third-order diagnosis)

Multistep solvers extrapolate the data prediction ``x0(lambda)`` along the trajectory with a
polynomial through the last 2 (2M) or 3 (3M, UniPC-3) predictions; a third-order method gains on
a second-order one only where ``x0(lambda)`` is smooth on the scale of a step (``h = 1.66`` at
NFE 10 on the log-SNR grid of our cosine schedule). This script integrates the probability-flow
ODE with RK4 on a fine uniform ``lambda`` grid (step ``--dl``) from the test noises, records the
data prediction at every node (the RK4 first stage), and reports per ``lambda`` window:

- ``slope``: RMS of ``d x0 / d lambda`` (central differences), how fast the prediction moves;
- ``curv``: RMS of the second derivative from a least-squares cubic fitted over ``--fit`` in ``lambda``;
- ``resid``: RMS of the residual of that cubic fit, the part of ``x0(lambda)`` no low-degree
  polynomial over a step follows (zero for a smooth function sampled finely; a sinusoidal
  noise-level embedding with short periods makes it non-zero);
- ``wiggle``: the same residual as a fraction of the change of ``x0`` across the window.

With ``--local-nfe``, it also measures the *local* error of one DPM-Solver++ step of order 1, 2
and 3 on the grid of that NFE: started from the reference state at ``ts[i]`` with the model's data
predictions at the reference states of ``ts[i], ts[i-1], ts[i-2]`` (exact history), compared with
the reference state at ``ts[i+1]`` (RMS per pixel). Where the third-order step is *less* accurate
than the second-order one with exact inputs, the quadratic extrapolation of ``x0(lambda)`` over
that step is worse than the linear one: the model's ``x0(lambda)`` is not smooth on that scale.

Run: ``python benchmarks/solver_roughness.py --model fashion-large`` and ``--model empirical``
(the exact denoiser of 2,000 training images under the same schedule) for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.trained_models import load_model, noises  # noqa: E402
from decoding.core.types import State  # noqa: E402
from decoding.solvers.parameterization import data_prediction  # noqa: E402
from decoding.solvers.reference import reference_solve  # noqa: E402


def x0_along_trajectory(model, schedule, x: Tensor, dl: float) -> tuple[Tensor, Tensor]:
    """RK4 in ``lambda`` with step ``dl`` from ``t_max`` to ``t_min``; ``(lambdas (K,), x0 (K, B, D))``."""
    lo, hi = float(schedule.lambda_(schedule.t_max)), float(schedule.lambda_(schedule.t_min))
    k = math.ceil((hi - lo) / dl)
    h = (hi - lo) / k
    b = x.shape[0]

    def pred(y: Tensor, lam: float) -> Tensor:
        sigma = math.sqrt(1.0 / (1.0 + math.exp(2 * lam)))
        alpha = math.sqrt(1.0 / (1.0 + math.exp(-2 * lam)))
        t = float(schedule.t_of_lambda(torch.tensor(lam, dtype=torch.float64)))
        xs = sigma * y
        state = State(x=xs, t=torch.full((b,), t, dtype=torch.float64), done=torch.zeros(b, dtype=torch.bool),
                      memory={"schedule": schedule})
        return data_prediction(model(state), xs, alpha, sigma)

    y = x / math.sqrt(1.0 / (1.0 + math.exp(2 * lo)))
    lams, x0s = [], []
    lam = lo
    for _ in tqdm(range(k + 1), desc="trajectory", leave=False):
        m1 = pred(y, lam)
        lams.append(lam)
        x0s.append(m1.reshape(b, -1))
        if len(lams) == k + 1:
            break
        k1 = math.exp(lam) * m1
        k2 = math.exp(lam + h / 2) * pred(y + h / 2 * k1, lam + h / 2)
        k3 = math.exp(lam + h / 2) * pred(y + h / 2 * k2, lam + h / 2)
        k4 = math.exp(lam + h) * pred(y + h * k3, lam + h)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        lam += h
    return torch.tensor(lams, dtype=torch.float64), torch.stack(x0s).to(torch.float64)


def window_stats(lams: Tensor, x0: Tensor, lo: float, hi: float, fit: float) -> dict[str, float]:
    """Slope, curvature and cubic-fit residual of ``x0`` ``(K, B, D)`` for ``lo <= lambda < hi``."""
    sel = torch.nonzero((lams >= lo) & (lams < hi)).flatten()
    dl = float(lams[1] - lams[0])
    half = max(2, round(fit / (2 * dl)))
    slopes, curvs, resids, spans = [], [], [], []
    for j in sel.tolist():
        a, b = j - half, j + half + 1
        if a < 0 or b > lams.numel():
            continue
        u = (lams[a:b] - lams[j])[:, None]
        basis = torch.cat([u**0, u, u**2, u**3], dim=1)  # (W, 4)
        y = x0[a:b].reshape(b - a, -1)
        coef = torch.linalg.lstsq(basis, y).solution  # (4, B*D)
        res = y - basis @ coef
        resids.append(float(res[half].pow(2).mean()))
        curvs.append(float((2 * coef[2]).pow(2).mean()))
        slopes.append(float(((x0[j + 1] - x0[j - 1]) / (2 * dl)).pow(2).mean()))
        spans.append(float((x0[b - 1] - x0[a]).pow(2).mean()))
    if not slopes:
        return {}
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {
        "slope": math.sqrt(mean(slopes)), "curv": math.sqrt(mean(curvs)), "resid": math.sqrt(mean(resids)),
        "wiggle": math.sqrt(mean(resids)) / max(math.sqrt(mean(spans)), 1e-12),
    }


def local_errors(model, schedule, x: Tensor, steps: int, spacing: str, ref_steps: int) -> list[dict]:
    """Per step ``i >= 2`` of the grid: RMS error of one order-1/2/3 step with exact inputs (see module docstring)."""
    from decoding.solvers.dpm_solver_pp import dpmpp_update
    from decoding.solvers.timesteps import make_timesteps

    ts = make_timesteps(schedule, steps, spacing)
    inner = ts[:-1]
    states = reference_solve(model, schedule, x, inner, steps=ref_steps)
    lams = schedule.lambda_(inner).tolist()
    x0s = []
    for t, xs in zip(inner.tolist(), states, strict=True):
        a, s = float(schedule.alpha(t)), float(schedule.sigma(t))
        st = State(x=xs, t=torch.full((x.shape[0],), t, dtype=torch.float64), done=torch.zeros(x.shape[0], dtype=torch.bool),
                   memory={"schedule": schedule})
        x0s.append(data_prediction(model(st), xs, a, s))
    rows = []
    for i in range(2, len(inner) - 1):
        a_t, s_t, s_s = float(schedule.alpha(inner[i + 1])), float(schedule.sigma(inner[i + 1])), float(schedule.sigma(inner[i]))
        hist = (x0s[i], x0s[i - 1], x0s[i - 2])
        lh = (lams[i], lams[i - 1], lams[i - 2])
        row = {"step": i, "lambda": [round(lams[i], 3), round(lams[i + 1], 3)]}
        for order in (1, 2, 3):
            out = dpmpp_update(states[i], hist, lh, lams[i + 1], a_t, s_t, s_s, order, "midpoint", "taylor")
            row[f"order{order}"] = float((out - states[i + 1]).pow(2).mean().sqrt())
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large", choices=["fashion-large", "fashion-small", "empirical"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--dl", type=float, default=0.02, help="lambda step of the fine RK4 grid (0: skip)")
    p.add_argument("--fit", type=float, default=0.4, help="lambda width of the local cubic fits")
    p.add_argument("--windows", type=float, nargs="+", default=[-10, -6, -4, -2, 0, 1, 2, 3, 4, 5.1])
    p.add_argument("--local-nfe", type=int, nargs="*", default=[], help="NFEs of the local-error table")
    p.add_argument("--spacing", default="logsnr", help="grid of the local-error table")
    p.add_argument("--ref-steps", type=int, default=200)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    model, schedule = load_model(args.model, args.samples, args.dtype)
    dtype = torch.float64
    rows = []
    if args.dl > 0:
        lams, x0 = x0_along_trajectory(model, schedule, noises(args.samples, 0).to(dtype), args.dl)
        for lo, hi in zip(args.windows[:-1], args.windows[1:], strict=True):
            s = window_stats(lams, x0, lo, hi, args.fit)
            if s:
                rows.append({"window": [lo, hi], **s})
    print(f"| lambda window | slope | curvature | cubic-fit residual | residual / change over {args.fit} |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| [{r['window'][0]:g}, {r['window'][1]:g}) | {r['slope']:.3g} | {r['curv']:.3g} | {r['resid']:.3g} | {r['wiggle']:.3g} |")
    local = {}
    for n in args.local_nfe:
        local[n] = local_errors(model, schedule, noises(args.samples, 0).to(dtype), n, args.spacing, args.ref_steps)
        print(f"\nlocal error of one step with exact inputs, {args.spacing} grid, NFE {n}")
        print("| step | lambda | order 1 | order 2 | order 3 |\n|---|---|---|---|---|")
        for r in local[n]:
            print(f"| {r['step']} | {r['lambda'][0]:.2f} -> {r['lambda'][1]:.2f} | {r['order1']:.4f} | {r['order2']:.4f} | {r['order3']:.4f} |")
    out = {"command": "python benchmarks/solver_roughness.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "rows": rows, "local": local, "seconds": round(time.time() - start, 1)}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    print(f"{time.time() - start:.0f} s")
    return out


if __name__ == "__main__":
    main()
