"""``report.md`` and its PNG plots (matplotlib, Agg backend) from a run's ``summary.json``.

Per task: a table of every config's metrics; quality against NFE (when the configs vary
``steps``) or against time per sample otherwise; the plots a task asks for (``[[task.plots]]``);
observed-vs-target bar charts for exact distributions (grammar-aligned decoding); curves such
as accuracy against the number of noise samples; image grids for image tasks.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from decoding.evals.storage import atomic_write_bytes, atomic_write_text
from decoding.evals.suite import Plot, Suite

STEP_KEYS = ("steps", "nfe")
MAX_PANELS = 6


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def _scalars(cfg: dict[str, Any]) -> list[str]:
    return [
        k
        for k, v in cfg.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("config",)
    ]


def _xvalue(cfg: dict[str, Any], x: str) -> float | None:
    if x == "seconds_per_sample":
        return cfg["seconds"] / cfg["samples"] if cfg["samples"] else None
    v = cfg.get(x, cfg["settings"].get(x))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _series_key(cfg: dict[str, Any], series: str | None, varying: list[str], x: str) -> str:
    if series is not None:
        return f"{series}={cfg['settings'].get(series)}"
    keys = [k for k in varying if k != x and k not in STEP_KEYS]
    return ",".join(f"{k}={cfg['settings'].get(k)}" for k in keys) or "all"


def _varying(configs: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for c in configs:
        keys.update(dict.fromkeys(c["settings"]))
    return [k for k in keys if len({repr(c["settings"].get(k)) for c in configs}) > 1]


def line_plot(path: Path, configs: list[dict[str, Any]], plot: Plot, task: str) -> bool:
    """Draw metric ``plot.y`` against ``plot.x``, one line per series; False when nothing to draw."""
    plt = _pyplot()
    varying = _varying(configs)
    groups: dict[str, list[tuple[float, float]]] = {}
    for c in configs:
        xv, yv = _xvalue(c, plot.x), c.get(plot.y)
        if xv is None or not isinstance(yv, (int, float)) or isinstance(yv, bool) or not math.isfinite(yv):
            continue
        groups.setdefault(_series_key(c, plot.series, varying, plot.x), []).append((xv, float(yv)))
    if not groups:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    for name, pts in groups.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel(plot.x.replace("_", " "))
    ax.set_ylabel(plot.y.replace("_", " "))
    if plot.logx:
        ax.set_xscale("log")
    if plot.logy:
        ax.set_yscale("log")
    ax.set_title(plot.title or f"{task}: {plot.y} vs {plot.x}", fontsize=10)
    ax.grid(alpha=0.3)
    if len(groups) > 1 or next(iter(groups)) != "all":
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def distribution_plot(path: Path, configs: list[dict[str, Any]], key: str, task: str) -> bool:
    """Observed vs target probability of the most likely outcomes, one panel per config (at most
    :data:`MAX_PANELS`, evenly spaced over the configs)."""
    plt = _pyplot()
    items = [c for c in configs if isinstance(c.get(key), dict) and "target" in c[key]]
    if not items:
        return False
    if len(items) > MAX_PANELS:  # evenly spaced configs, first and last included
        step = (len(items) - 1) / (MAX_PANELS - 1)
        items = [items[round(i * step)] for i in range(MAX_PANELS)]
    fig, axes = plt.subplots(len(items), 1, figsize=(7, 2.4 * len(items)), dpi=110, squeeze=False)
    for ax, c in zip(axes[:, 0], items, strict=True):
        d = c[key]
        xs = range(len(d["labels"]))
        ax.bar([x - 0.2 for x in xs], d["target"], width=0.4, label="target (exact)")
        ax.bar([x + 0.2 for x in xs], d["observed"], width=0.4, label="observed")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(d["labels"], rotation=45, ha="right", fontsize=7)
        kl = c.get("kl")
        ax.set_title(
            f"{c['label']}"
            + (f"  (KL {_fmt(kl)}, floor {_fmt(c.get('kl_floor'))})" if kl is not None else ""),
            fontsize=9,
        )
        ax.set_ylabel("probability", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{task}: distribution of outputs", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def curve_plot(path: Path, configs: list[dict[str, Any]], key: str, task: str) -> bool:
    """Curves ``{"x": [...], "y": [...]}`` stored under ``key``, one line per config."""
    plt = _pyplot()
    items = [c for c in configs if isinstance(c.get(key), dict) and "x" in c[key] and "y" in c[key]]
    if not items:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    for c in items:
        ax.plot(c[key]["x"], c[key]["y"], marker="o", label=c["label"])
    d = items[0][key]
    ax.set_xlabel(d.get("xlabel", "x"))
    ax.set_ylabel(d.get("ylabel", key))
    if d.get("logx"):
        ax.set_xscale("log")
    ax.set_title(f"{task}: {key.replace('_', ' ')}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def default_plots(configs: list[dict[str, Any]], primary: list[str]) -> list[Plot]:
    """Each metric's main number against NFE when the configs vary the step count, else against time."""
    if len(configs) < 2:
        return []
    varying = _varying(configs)
    x = "nfe" if any(k in varying for k in STEP_KEYS) else "seconds_per_sample"
    return [Plot(x=x, y=y, logx=x == "nfe") for y in primary if y in _scalars(configs[0])]


def write_report(
    out: Path,
    summary: dict[str, Any],
    suite: Suite,
    images: Callable[[str, dict[str, Any]], Any] | None = None,
) -> Path:
    """Write ``out/report.md`` and ``out/plots/*.png``; returns the report's path.

    Args:
        images: ``images(task_name, config_summary)`` -> a PNG path (relative to ``out``) of
            sample images for that config, or None; used for image tasks.
    """
    specs = {t.name: t for t in suite.tasks}
    lines = [f"# Eval report: {summary['suite']}", ""]
    if summary.get("description"):
        lines += [summary["description"], ""]
    lines += [
        f"Device: {summary['device']} · processes: {summary['world_size']} · torch {summary['torch']} · "
        f"suite seed {summary['seed']}"
        + (f" · limit {summary['limit']} samples per task" if summary.get("limit") else ""),
        "",
        "Times are decoding wall time (summed over processes), NFE the model evaluations per sample.",
        "",
    ]
    for t in summary["tasks"]:
        configs = t["configs"]
        lines += [f"## {t['name']}", ""]
        if t["description"]:
            lines += [t["description"], ""]
        lines += [
            f"Kind `{t['kind']}` · model `{t['model']}` · decoder `{t['decoder']}` · metrics: {', '.join(t['metrics']) or '-'}",
            "",
        ]
        keys = [k for k in _scalars(configs[0]) if k not in ("seconds",)] if configs else []
        lines.append("| config | " + " | ".join(k.replace("_", " ") for k in keys) + " | s/sample |")
        lines.append("|---" * (len(keys) + 2) + "|")
        for c in configs:
            per = c["seconds"] / c["samples"] if c["samples"] else float("nan")
            lines.append(
                f"| {c['label']} | " + " | ".join(_fmt(c.get(k)) for k in keys) + f" | {_fmt(per)} |"
            )
        lines.append("")
        declared = list(specs[t["name"]].plots) if t["name"] in specs else []
        for p in declared or default_plots(configs, t.get("primary", [])):
            name = f"plots/{t['name']}-{p.y}-vs-{p.x}.png"
            if line_plot(out / name, configs, p, t["name"]):
                lines += [f"![{t['name']}: {p.y} vs {p.x}]({name})", ""]
            elif declared:  # a plot the suite asked for and could not get: say so, never drop it silently
                have = sorted(k for k in _scalars(configs[0]) if k != "settings")
                note = (f"Plot {p.y} vs {p.x} of task {t['name']} is not drawn: no config has numbers for both "
                        f"(numbers of its results: {', '.join(have)}; settings that vary: {', '.join(_varying(configs)) or 'none'}).")
                warnings.warn(note, stacklevel=2)
                lines += [f"*{note}*", ""]
        dict_keys = {k for c in configs for k, v in c.items() if isinstance(v, dict) and k != "settings"}
        for k in sorted(dict_keys):
            name = f"plots/{t['name']}-{k}.png"
            if distribution_plot(out / name, configs, k, t["name"]) or curve_plot(
                out / name, configs, k, t["name"]
            ):
                lines += [f"![{t['name']}: {k}]({name})", ""]
        if images is not None:
            for c in configs:
                rel = images(t["name"], c)
                if rel:
                    lines += [f"Samples of {c['label']}:", "", f"![{t['name']} {c['label']}]({rel})", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
