"""Distilled Decoding evaluation (arXiv 2412.17153): FID and images/s of the AR teacher, its DD students and the naive baseline.

Rows, all through ``decoding.generate`` (labels ``i mod 10``, seed 0):

- ``teacher``: ancestral AR sampling with the KV cache, conditional only (``cfg:1``, 49 calls);
- ``teacher-cfg``: the same with the CFG scale the pairs were made with (98 calls at batch 2B);
- ``teacher-flow``: the teacher's deterministic noise -> tokens map (what the student learned);
- ``dd-1`` / ``dd-2``: the student in one / two steps;
- ``one-pass``: every token at once from one teacher pass (CFG as ``teacher-cfg``);
- ``vq-recon``: the tokenizer's reconstructions of the 10,000 test images (the floor of any token model).

With ``teacher-flow`` among the rows, the ``dd-1`` / ``dd-2`` rows also report ``same_as_map``: the share of
their images equal, pixel for pixel, to the teacher's map of the same noise and class (both draw the noise
from seed 0 the same way), i.e. how often the student reproduces the whole 49-token map.

FID (:func:`decoding.evals.fid.fid`, Inception features vs. the 60,000 training images) on ``--n``
samples (or, with ``--no-fid --npz-dir``, later on another machine); images/s of whole ``generate`` calls at ``--batch-size`` (one warm-up call, then
``--timed-reps`` repetitions of at least ``--timed-batches`` calls and ``--min-seconds`` each, synchronised;
the median), and the ratios to ``teacher-cfg``. Grids (10 per class)
are written to ``--out-dir``; the table to stdout and ``--json``.

    python benchmarks/dd_eval.py --teacher models/fashion-ar --student models/fashion-ar-dd --vq models/fashion-vq \\
        --n 10000 --batch-size 256 --device cuda --json benchmarks/results/dd_eval_h100_2026-12-06.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import decoding as dc

ROWS = ("teacher", "teacher-cfg", "teacher-flow", "dd-1", "dd-2", "one-pass", "vq-recon")


def row_call(name: str, teacher: Any, student: Any, scale: float) -> tuple[Any, dict[str, Any]]:
    """The handle and the ``generate`` options of a row."""
    cfg = [f"cfg:{scale:g}"]
    return {
        "teacher": (teacher, {"guidance": ["cfg:1"]}),
        "teacher-cfg": (teacher, {"guidance": cfg}),
        "teacher-flow": (teacher, {"guidance": cfg, "sampler": "flow"}),
        "dd-1": (student, {"steps": 1}),
        "dd-2": (student, {"steps": 2}),
        "one-pass": (teacher, {"guidance": cfg, "sampler": "one-pass"}),
    }[name]


def default_scale(teacher: Any, student: Any) -> float:
    """The CFG scale of the guided rows: the student's pairs' scale, else the teacher card's default ``cfg:S``."""
    if student is not None:
        return float(student.card["dd"]["guidance"])
    from decoding.api.image_ar import cfg_scale

    return cfg_scale(teacher.card.get("defaults", {}).get("guidance"), teacher.name)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(handle: Any, opts: dict[str, Any], batch: int, batches: int, device: str, reps: int = 3,
               min_seconds: float = 1.0) -> list[float]:
    """Images per second of whole ``generate`` calls of ``batch`` images (after one warm-up call), one figure
    per repetition: each times at least ``batches`` calls and at least ``min_seconds`` (a one-step student's
    call is ~17 ms on an H100: four calls alone gave rates 2x apart between two runs, 2026-12-07)."""
    labels = [i % 10 for i in range(batch)]
    dc.generate(handle, class_label=labels, n=batch, seed=1, **opts)
    sync(device)
    rates, seed = [], 2
    for _ in range(reps):
        start, calls = time.perf_counter(), 0
        while calls < batches or time.perf_counter() - start < min_seconds:
            dc.generate(handle, class_label=labels, n=batch, seed=seed, **opts)
            seed, calls = seed + 1, calls + 1
            if calls >= batches:
                sync(device)  # the elapsed time read next must include the device's work
        rates.append(batch * calls / (time.perf_counter() - start))
    return rates


def samples(handle: Any, opts: dict[str, Any], n: int, batch: int) -> tuple[torch.Tensor, float]:
    out = dc.generate(handle, class_label=[i % 10 for i in range(n)], n=n, seed=0, batch_size=batch, **opts)
    return out.images, max(out.nfe)


def vq_reconstructions(vq_folder: str, n: int, device: str, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images through the tokenizer, and their labels."""
    from decoding.data.fashion_mnist import fashion_splits
    from decoding.models.vq import load_vq

    vq = load_vq(vq_folder, device)
    _, (x, y), _ = fashion_splits(None, 1, n, device)
    return torch.cat([vq.decode(vq.encode(b)).float().cpu() for b in x.split(batch)]), y.cpu()


def same_share(images: torch.Tensor, reference: torch.Tensor) -> float:
    """The share of ``images`` ``(N, C, H, W)`` equal, pixel for pixel, to ``reference`` (same shape)."""
    if images.shape != reference.shape:
        raise ValueError(f"cannot compare {tuple(images.shape)} images with {tuple(reference.shape)}")
    return float((images == reference).flatten(1).all(1).float().mean())


def cell(row: dict[str, Any], key: str, fmt: str) -> str:
    """``row[key]`` formatted, or ``-`` when missing."""
    return format(row[key], fmt) if row.get(key) is not None else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="image-ar folder or zoo name")
    p.add_argument("--student", help="image-ar-dd folder or zoo name (needed by the dd-1 / dd-2 rows)")
    p.add_argument("--scale", type=float, help="CFG scale of the teacher-cfg, teacher-flow and one-pass rows "
                   "(default: the one the student's pairs were made with, else the teacher card's default)")
    p.add_argument("--vq", help="the tokenizer folder, for the vq-recon row (needs Fashion-MNIST)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--n", type=int, default=10000, help="samples per FID")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--timed-batches", type=int, default=4, help="at least this many timed calls a repetition")
    p.add_argument("--timed-reps", type=int, default=3, help="timed repetitions; images/s is their median")
    p.add_argument("--min-seconds", type=float, default=1.0, help="at least this long a repetition")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-fid", action="store_true", help="only time the rows")
    p.add_argument("--classifier", help="also the class accuracy of the samples under this classifier (e.g. fashion-classifier)")
    p.add_argument("--out-dir", type=Path, help="write a grid (10 per class) per row here")
    p.add_argument("--npz-dir", type=Path, help="save each row's samples as ROW.npz (uint8 images, labels) for "
                   "`python -m decoding.evals.fid samples` on a machine with the Inception network")
    p.add_argument("--json", type=Path, help="write the table here")
    a = p.parse_args(argv)
    from decoding.evals.fid import fid

    if a.student is None and {"dd-1", "dd-2"} & set(a.rows):
        p.error("the dd-1 and dd-2 rows need --student (or leave them out of --rows)")
    teacher = dc.load(a.teacher, device=a.device)
    student = dc.load(a.student, device=a.device) if a.student is not None else None
    scale = a.scale if a.scale is not None else default_scale(teacher, student)
    table: dict[str, dict[str, Any]] = {}
    map_images: torch.Tensor | None = None  # the teacher-flow row's images, for the students' same_as_map
    for name in a.rows:
        if name == "vq-recon":
            if a.vq is None:
                continue
            (images, labels), nfe, rate, rates = vq_reconstructions(a.vq, a.n, a.device, a.batch_size), 0.0, None, []
        else:
            handle, opts = row_call(name, teacher, student, scale)
            rates = throughput(handle, opts, a.batch_size, a.timed_batches, a.device, a.timed_reps, a.min_seconds)
            rate = statistics.median(rates)
            images, nfe = samples(handle, opts, a.n, a.batch_size)
            labels = torch.arange(images.shape[0]) % 10
        row: dict[str, Any] = {"nfe": nfe, "images_per_s": rate}
        if rates:
            row["images_per_s_reps"] = rates
        if not a.no_fid:
            row["fid"] = fid(images, device=a.device)
        if a.classifier is not None:
            from decoding.evals.classifier import class_accuracy, load_classifier

            row["class_accuracy"] = class_accuracy(load_classifier(a.classifier, a.device), images, labels)
        if a.out_dir is not None:
            from decoding.api.generation import make_grid

            a.out_dir.mkdir(parents=True, exist_ok=True)
            order = torch.arange(min(100, images.shape[0]))
            grid = ((images[order].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            make_grid(grid, nrow=10, scale=2).save(a.out_dir / f"{name}.png")
        if a.npz_dir is not None:
            import numpy as np

            a.npz_dir.mkdir(parents=True, exist_ok=True)
            u8 = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
            np.savez(a.npz_dir / f"{name}.npz", images=u8, labels=labels.numpy())
        if name == "teacher-flow":
            map_images = images
        elif name in ("dd-1", "dd-2") and map_images is not None:
            row["same_as_map"] = same_share(images, map_images)
        table[name] = row
        print(f"{name:>12}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    base = table.get("teacher-cfg", {})
    for row in table.values():
        if base.get("images_per_s") and row.get("images_per_s"):
            row["speedup_vs_teacher_cfg"] = row["images_per_s"] / base["images_per_s"]
        if base.get("fid") and row.get("fid") is not None:
            row["fid_ratio_vs_teacher_cfg"] = row["fid"] / base["fid"]
    print("\n| row | NFE | images/s | x teacher-cfg | FID | FID ratio | class accuracy | same as the map |\n|---|---|---|---|---|---|---|---|")
    for name, r in table.items():
        cells = [cell(r, "images_per_s", ".1f"), cell(r, "speedup_vs_teacher_cfg", ".1f"), cell(r, "fid", ".2f"),
                 cell(r, "fid_ratio_vs_teacher_cfg", ".2f"), cell(r, "class_accuracy", ".3f"), cell(r, "same_as_map", ".3f")]
        print(f"| {name} | {r['nfe']:g} | " + " | ".join(cells) + " |")
    if a.json is not None:
        device = torch.cuda.get_device_name() if a.device.startswith("cuda") else platform.processor() or "cpu"
        meta = {"command": " ".join(sys.argv), "device": device, "n": a.n, "batch_size": a.batch_size, "cfg_scale": scale,
                "teacher": a.teacher, "student": a.student, "torch": torch.__version__}
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"meta": meta, "rows": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
