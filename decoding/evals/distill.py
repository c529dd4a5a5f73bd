"""Evaluation of guidance-distilled students against their CFG teacher (Meng et al., arXiv 2210.03142).

    python -m decoding.evals.distill --teacher models/fashion-large --scale 1.5 \\
        --students runs/distill/stage1 runs/distill/steps-8 runs/distill/steps-4 runs/distill/steps-2 runs/distill/steps-1 \\
        --n 10000 --device cuda --out distill_eval.json

Rows, each with ``n`` class-balanced samples (class ``i % 10``) from the same seed:

- the teacher with CFG at ``--scale`` and DPM-Solver++(2M), ``--teacher-steps`` (20: NFE 40);
- the same-step baselines: the teacher with CFG and DPM-Solver++(2M) at ``--baseline-steps`` (4: NFE 8;
  1 step: DDIM, the first-order DPM-Solver++);
- a stage-1 student: DPM-Solver++(2M) at ``--teacher-steps`` steps (one call per step) at each of
  ``--scales``, next to the teacher at the same scales;
- an N-step student: its N steps, deterministic and (N >= 2) stochastic sampler.

Each row: the SHA-256 of the model's ``model.safetensors`` (how
``python -m decoding.distill.card`` finds a student's rows after its folder is moved or renamed), FID against the Fashion-MNIST training statistics (:mod:`decoding.evals.fid`), class
accuracy by ``models/fashion-classifier``, images/s (decode wall time; one warm-up call per row
first). ``--npz-dir`` also saves each row's samples as uint8 (``images`` ``(N, 1, 28, 28)``,
``labels``) for ``python -m decoding.evals.fid samples FILE.npz`` on a machine with the
Inception network; ``--no-fid`` skips FID here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import decoding as dc
from decoding.api.zoo import resolve
from decoding.distill.card import weights_digest
from decoding.evals.fid import feature_stats, frechet_distance, inception_features, load_reference, to_uint8
from decoding.io import atomic_write_bytes


@dataclass(frozen=True)
class Row:
    """One configuration to sample: a model and the options of :func:`decoding.generate`."""

    label: str
    model: str
    options: dict[str, Any]
    scale: float

    def describe(self) -> str:
        o = self.options
        return str(o.get("sampler") or f"{o.get('solver', 'dpmpp_2m')} {o.get('steps')} steps")


def cfg_options(scale: float, steps: int) -> dict[str, Any]:
    """:func:`decoding.generate` options of a CFG row: DPM-Solver++(2M) with ``steps`` steps; at one step its
    first-order form, DDIM (the 2M solver needs two steps and refuses one)."""
    return {"guidance": [f"cfg:{scale:g}"], "solver": "dpmpp_2m" if steps >= 2 else "ddim", "steps": steps}


def plan(teacher: str, students: list[str], scale: float, scales: list[float], teacher_steps: int,
         baseline_steps: list[int]) -> list[Row]:
    """The rows of one evaluation (see the module docstring)."""
    rows = [Row(f"teacher CFG {scale:g}", teacher, cfg_options(scale, teacher_steps), scale)]
    rows += [Row(f"teacher CFG {scale:g}, {k} steps", teacher, cfg_options(scale, k), scale) for k in baseline_steps]
    for path in students:
        card = resolve(path).card
        steps = card.get("distill", {}).get("steps")
        name = Path(path).name
        if steps is None:
            for s in scales:
                if s != scale:
                    rows.append(Row(f"teacher CFG {s:g}", teacher, cfg_options(s, teacher_steps), s))
                rows.append(Row(f"{name} (stage 1)", path, cfg_options(s, teacher_steps), s))
            continue
        label = f"{name} ({steps} step{'s' if steps > 1 else ''})"
        for sampler in ("deterministic", "stochastic") if steps >= 2 else ("deterministic",):
            rows.append(Row(label, path, {"guidance": [f"cfg:{scale:g}"], "sampler": sampler}, scale))
    return rows


def evaluate(rows: list[Row], n: int, device: str, seed: int = 0, batch_size: int = 1000, fid: bool = True,
             classifier: str | None = "fashion-classifier", reference: str | None = None,
             npz_dir: Path | None = None) -> list[dict[str, Any]]:
    """Sample and score every row; returns one result dict per row (also printed as JSON lines)."""
    from decoding.evals.classifier import class_accuracy, load_classifier

    ref = load_reference(reference) if fid else None
    clf = load_classifier(classifier, device) if classifier else None
    handles: dict[str, Any] = {}
    out = []
    for k, row in enumerate(rows):
        handle = handles.get(row.model) or handles.setdefault(row.model, dc.load(row.model, device))
        labels = torch.arange(n) % handle.model.num_classes
        warm = min(n, batch_size)
        dc.generate(handle, n=warm, class_label=labels[:warm], seed=seed + 1, batch_size=batch_size, **row.options)
        samples = dc.generate(handle, n=n, class_label=labels, seed=seed, batch_size=batch_size, **row.options)
        settings = samples.settings
        result: dict[str, Any] = {
            "label": row.label, "model": row.model, "kind": handle.kind, "sampler": row.describe(), "steps": settings["steps"],
            "nfe": max(samples.nfe), "scale": row.scale, "w": row.scale - 1.0, "n": n, "seed": seed,
            "seconds": round(samples.seconds, 3), "images_per_second": round(n / max(samples.seconds, 1e-9), 1),
            "device": str(device), "dtype": settings["dtype"], "weights_sha256": weights_digest(resolve(row.model).path),
        }
        if ref is not None:
            mu, s = feature_stats(inception_features(samples.images, device))
            result["fid"] = frechet_distance(mu, s, *ref)
        if clf is not None:
            result["class_accuracy"] = class_accuracy(clf, samples.images, labels)
        if npz_dir is not None:
            npz_dir.mkdir(parents=True, exist_ok=True)
            path = npz_dir / f"{k:02d}_{''.join(c if c.isalnum() else '_' for c in row.label)}_{result['sampler'].split()[0]}.npz"
            np.savez_compressed(path, images=to_uint8(samples.images).numpy(), labels=labels.numpy())
            result["npz"] = str(path)
        print(json.dumps(result), flush=True)
        out.append(result)
    return out


def table(results: list[dict[str, Any]]) -> str:
    """A markdown table; FID and speed also as ratios to the first row (the teacher)."""
    base = results[0]
    lines = ["| model | sampler | NFE | CFG scale (w) | FID | FID / teacher | class acc. | images/s | speed-up |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        fid = f"{r['fid']:.2f}" if "fid" in r else "-"
        ratio = f"{r['fid'] / base['fid']:.2f}x" if "fid" in r and base.get("fid") else "-"
        acc = f"{r['class_accuracy']:.3f}" if "class_accuracy" in r else "-"
        speed = f"{r['images_per_second'] / base['images_per_second']:.1f}x"
        lines.append(f"| {r['label']} | {r['sampler']} | {r['nfe']:g} | {r['scale']:g} ({r['w']:g}) | {fid} | {ratio} | {acc} | "
                     f"{r['images_per_second']} | {speed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decoding.evals.distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="fashion-large")
    p.add_argument("--scale", type=float, default=1.5, help="the teacher's CFG scale (its best: 1.5, i.e. Meng's w = 0.5)")
    p.add_argument("--students", nargs="*", default=[], help="student folders (stage 1 and N-step)")
    p.add_argument("--scales", type=float, nargs="+", default=None, help="CFG scales of the stage-1 comparison (default: --scale)")
    p.add_argument("--teacher-steps", type=int, default=20)
    p.add_argument("--baseline-steps", type=int, nargs="*", default=[4])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-fid", action="store_true", help="skip FID (e.g. without the Inception network; use --npz-dir)")
    p.add_argument("--reference", default=None)
    p.add_argument("--classifier", default="fashion-classifier")
    p.add_argument("--no-classifier", action="store_true")
    p.add_argument("--npz-dir", type=Path, default=None, help="save every row's samples as .npz here")
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    a = p.parse_args(argv)
    try:
        rows = plan(a.teacher, a.students, a.scale, a.scales or [a.scale], a.teacher_steps, a.baseline_steps)
        results = evaluate(rows, a.n, a.device, a.seed, a.batch_size, not a.no_fid,
                           None if a.no_classifier else a.classifier, a.reference, a.npz_dir)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(results))
    if a.out:
        dev = torch.device(a.device)
        doc = {"command": "python -m decoding.evals.distill " + " ".join(sys.argv[1:] if argv is None else argv),
               "date": datetime.date.today().isoformat(), "torch": torch.__version__,
               "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
               "note": "FID of 28x28 images resized to 299x299 against Fashion-MNIST train statistics", "results": results}
        atomic_write_bytes(a.out, (json.dumps(doc, indent=2) + "\n").encode())
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
