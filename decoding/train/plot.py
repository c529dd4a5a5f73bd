"""The loss curve of a training run: training loss and validation loss against the step."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from decoding.io import atomic_write_bytes


def plot_history(history: dict[str, list[Any]], path: Path, title: str, ylabel: str = "loss") -> Path | None:
    """Write a PNG of ``history`` (``{"train": [[step, loss, lr], ...], "valid": [{"step", "loss", "loss_raw"?}, ...]}``).

    Training loss (mean over each logging interval) as a line, validation loss of the shipped
    (EMA) weights as dots, and of the raw weights when recorded; log-scale y. Written atomically.
    Returns ``None`` (with a note on stderr) when matplotlib is not installed: ``train_log.json``
    holds the same numbers, and ``decoding train MODEL --replot FOLDER`` draws it later.
    """
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: no {path} (train_log.json has the numbers; "
              f"redraw with `decoding train --replot {path.parent}`)", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    train, valid = history.get("train", []), history.get("valid", [])
    if train:
        ax.plot([r[0] for r in train], [r[1] for r in train], lw=0.9, label="train (mean per log interval)")
    if valid:
        has_raw = any("loss_raw" in r for r in valid)
        ax.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", ms=3, lw=1.2,
                label="validation (EMA weights)" if has_raw else "validation")
        if has_raw:
            ax.plot([r["step"] for r in valid], [r["loss_raw"] for r in valid], "^--", ms=3, lw=0.8,
                    label="validation (raw weights)")
    values = [r[1] for r in train] + [r["loss"] for r in valid]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if train or valid:
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
