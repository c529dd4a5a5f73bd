"""The README.md of an AGD adapter folder (arXiv 2503.07274), from its ``config.json`` and training log.

    python -m decoding.models.adapter_card models/fashion-large-agd [--eval evals/results/guidance/results.json]

Written at export by ``decoding train agd-fashion`` (without sample quality); rerun with the
results of ``python -m decoding.evals.guidance`` to add the rows measured with these adapters (kept
in the folder as ``eval_guidance.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from decoding.io import atomic_write_bytes
from decoding.models.adapters import default_adapter_folder
from decoding.models.card import _read, _training_lines, cards_main
from decoding.models.image import models_root

EVAL_FILE = "eval_guidance.json"  # the AGD rows of the guidance evaluation, kept beside the weights


def agd_results(results: dict[str, Any]) -> dict[str, Any]:
    """The run's metadata and its AGD rows only (what the card shows)."""
    return {k: v for k, v in results.items() if k != "results"} | {
        "results": [r for r in results.get("results", []) if r.get("label", "").startswith("AGD")]}


def render_adapter_card(folder: str | Path, log: dict[str, Any] | None = None, results: dict[str, Any] | None = None) -> str:
    """README text of an adapter folder; ``log`` defaults to its ``train_log.json``, ``results`` to its ``eval_guidance.json``."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    base, a = config["base"], config["adapters"]
    lo, hi = config["scale_range"]
    log = log if log is not None else (_read(folder / "train_log.json") or {})
    results = results if results is not None else _read(folder / EVAL_FILE)
    weights = folder / "adapters.safetensors"
    traj = config.get("trajectories", {})
    off = config.get("adapters_off_valid_loss")
    lines = [
        f"# {folder.name}", "",
        f"Guidance adapters for `{base['name']}` (adapter guidance distillation, Jensen & Sadat, arXiv 2503.07274), "
        "trained by us: with them ONE call of the frozen base model per solver step approximates classifier-free "
        "guidance, which costs two. Without them the base model is unchanged.", "",
        "| | |", "|---|---|",
        f"| guidance | CFG scale s in [{lo:g}, {hi:g}] as an input (random Fourier features); default `agd:{config['default_scale']:g}` |",
        f"| adapters | an offset after each of the {len(a['widths'])} UNet stages from the scale and the UNet's noise/class "
        f"embedding (width {a['hidden']}); {config['adapter_parameters']:,} parameters = "
        f"{100 * config['parameter_ratio']:.1f}% of the base's {base['parameters']:,} |",
        f"| weights | `adapters.safetensors` ({config.get('weights_dtype')}, EMA), {weights.stat().st_size / 2**20:.2f} MiB |"
        if weights.is_file() else "| weights | missing |",
        f"| base | `{base['name']}`, weights fingerprint `{base['fingerprint'][:16]}...` (checked when attached) |",
        f"| data | {traj.get('train')} CFG-guided trajectories of the base model ({traj.get('solver')}, {traj.get('spacing')} grids "
        f"of {traj.get('steps')} and of random 2-{2 * int(traj.get('steps') or 0)} steps), every visited state an example "
        f"({traj.get('train_examples')}); {traj.get('valid')} trajectories held out |", "",
        "## Training", "",
    ]
    if off is not None:
        lines += [f"- validation distance to the CFG target with the adapters off (the base's conditional prediction): {off:.5f}"]
    if log:
        lines += _training_lines(log)
    lines += ["## Sample quality", ""]
    rows = [r for r in (results or {}).get("results", []) if r.get("label", "").startswith("AGD")]
    if rows:
        lines += [f"Command: `{(results or {}).get('command')}` on {(results or {}).get('device_name')} ({(results or {}).get('date')}).", "",
                  "| configuration | NFE | FID | class accuracy | images/s |", "|---|---:|---:|---:|---:|"]
        for r in rows:
            fid = f"{r['fid']:.2f}" if r.get("fid") is not None else "-"
            acc = f"{r['class_accuracy']:.3f}" if r.get("class_accuracy") is not None else "-"
            lines.append(f"| {r['label']} | {r['nfe']:g} | {fid} | {acc} | {r['images_per_second']} |")
        lines.append("")
    else:
        lines += ["Not measured yet: see docs/perf/guidance.md (`python -m decoding.evals.guidance`).", ""]
    lines += ["## Use", "", "```python", "import decoding as dc",
              f'h = dc.load("{base["name"]}")',
              f'out = dc.generate(h, class_label=7, n=16, steps=20, guidance=["agd:{config["default_scale"]:g},adapters={_shown_folder(folder)}"], seed=0)',
              "```", "",
              f"or `decoding generate {base['name']} --class 7 --n 64 --guidance agd:{config['default_scale']:g}` "
              f"(`agd` without `adapters=` reads `{_shown_folder(default_adapter_folder(base['name']))}`).", ""]
    return "\n".join(lines)


def keep_agd_results(folder: Path, results: dict[str, Any]) -> None:
    """Store the AGD rows of ``--eval`` as ``folder/eval_guidance.json``, so the card re-renders without it."""
    atomic_write_bytes(folder / EVAL_FILE, (json.dumps(agd_results(results), indent=1) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    return cards_main("python -m decoding.models.adapter_card", "Write README.md cards of AGD adapter folders.",
                      "results of python -m decoding.evals.guidance (the AGD rows go on the card)", render_adapter_card, argv,
                      keep=keep_agd_results)


def _shown_folder(folder: Path) -> str:
    """``folder`` as a card shows it: ``models/<name>`` inside the zoo (no machine path), else as given."""
    return f"models/{folder.name}" if folder.resolve().parent == models_root().resolve() else str(folder)


if __name__ == "__main__":
    sys.exit(main())
