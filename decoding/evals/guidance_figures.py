"""Figures of the guidance evaluation (issue 18): FID against images/s and against class accuracy, and
one PNG sample grid per row (classes down, samples across).

``plots`` reads the joined rows of ``report`` (``results.json``'s ``results``); ``grids`` reads the
``samples/*.npz`` of a ``run`` (uint8 ``images`` ``(n, 1, 28, 28)`` and ``labels`` ``(n,)``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decoding.api.generation import make_grid
from decoding.evals.report import _pyplot, _save
from decoding.io import atomic_write_bytes

FAMILIES = ("none", "cfgpp", "cfg", "pag", "agd", "stitch")  # "cfgpp" before "cfg": prefixes are matched in order


def family(config: str) -> str:
    """The wrapper a row name belongs to (``cfg-1.5-pag-1`` is ``cfg+pag``)."""
    if config.startswith("cfg-") and "-pag-" in config:
        return "cfg+pag"
    return next((f for f in FAMILIES if config == f or config.startswith(f + "-")), config)


def plots(folder: Path, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """``fid_vs_speed.png`` and ``fid_vs_accuracy.png`` in ``folder``, one panel per NFE budget; rows without FID are left out.

    Returns the files written (none when no row has a FID).
    """
    scored = [r for r in rows if r.get("fid") is not None]
    if not scored:
        return []
    plt = _pyplot()
    budgets = sorted({r["nfe_budget"] for r in scored})
    written = []
    for name, key, xlabel, log in (("fid_vs_speed.png", "images_per_second", "images/s", True),
                                   ("fid_vs_accuracy.png", "class_accuracy", "class accuracy", False)):
        fig, axes = plt.subplots(1, len(budgets), figsize=(6.5 * len(budgets), 4.8), squeeze=False, layout="tight")
        for ax, budget in zip(axes[0], budgets, strict=True):
            here = [r for r in scored if r["nfe_budget"] == budget and r.get(key) is not None]
            for fam in sorted({family(r["config"]) for r in here}):
                pts = [r for r in here if family(r["config"]) == fam]
                ax.scatter([r[key] for r in pts], [r["fid"] for r in pts], label=fam, s=28)
                for r in pts:
                    ax.annotate(r["label"], (r[key], r["fid"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
            if log:
                ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set(xlabel=xlabel, ylabel="FID (log)", title=f"NFE budget {budget}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        _save(fig, folder / name)
        plt.close(fig)
        written.append(folder / name)
    return written


def sample_grid(images: np.ndarray, labels: np.ndarray, per_class: int = 10, scale: int = 2) -> Any:
    """A PIL grid: one row per class (ascending), the first ``per_class`` samples of that class across.

    ``images``: uint8 ``(n, C, H, W)``; ``labels``: ``(n,)``. A class with fewer samples leaves its row short
    (black tiles), so rows stay aligned with classes.
    """
    if images.ndim != 4 or images.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise ValueError(f"sample_grid needs uint8 images (n, C, H, W) and labels (n,), got {images.dtype} "
                         f"{images.shape} and {labels.shape}")
    classes = sorted(set(labels.tolist()))
    tiles = np.zeros((len(classes) * per_class, *images.shape[1:]), dtype=np.uint8)
    for i, c in enumerate(classes):
        pick = images[labels == c][:per_class]
        tiles[i * per_class: i * per_class + len(pick)] = pick
    return make_grid(torch.from_numpy(tiles), nrow=per_class, scale=scale)


def grids(source: Path, folder: Path, per_class: int = 10, scale: int = 1) -> list[Path]:
    """``folder/grids/<row>.png`` for every ``source/samples/<row>.npz``; returns the files written."""
    out = []
    for npz in sorted((source / "samples").glob("*.npz")):
        if npz.name.endswith(".tmp.npz"):
            continue
        with np.load(npz) as data:
            img = sample_grid(data["images"], data["labels"], per_class, scale)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        path = folder / "grids" / f"{npz.stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
        out.append(path)
    return out
