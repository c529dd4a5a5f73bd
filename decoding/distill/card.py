"""The README.md of a distilled student folder, from its ``config.json``, training log and measured results.

    python -m decoding.distill.card runs/distill/steps-4 [--eval distill_eval.json]

Written at export by the training task (without results); rerun after
``python -m decoding.evals.distill`` to add the rows of that results file that are this student: rows
whose ``weights_sha256`` is the folder's ``model.safetensors`` (so a student evaluated as
``runs/distill/steps-4`` and then moved to ``models/fashion-large-distill-4`` keeps its rows), or, in
results without digests, rows naming this folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from decoding.data.tokenizer import file_sha256
from decoding.models.card import _read, _training_lines, cards_main


def weights_digest(folder: str | Path | None) -> str | None:
    """SHA-256 of ``folder/model.safetensors`` (hex), or None when there is no such file."""
    if folder is None:
        return None
    weights = Path(folder) / "model.safetensors"
    return file_sha256(weights) if weights.is_file() else None


def _result_lines(rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    lines = [f"Command: `{meta.get('command')}` on {meta.get('device_name')} ({meta.get('date')}).", "",
             "| model | sampler | NFE | CFG scale (w) | samples | FID | class accuracy | images/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fid = f"{r['fid']:.2f}" if r.get("fid") is not None else "-"
        acc = f"{r['class_accuracy']:.3f}" if r.get("class_accuracy") is not None else "-"
        lines.append(f"| {r['label']} | {r['sampler']} | {r['nfe']} | {r['scale']:g} ({r['w']:g}) | {r['n']} | {fid} | {acc} | "
                     f"{r['images_per_second']} |")
    return [*lines, ""]


def render_card(folder: str | Path, log: dict[str, Any] | None = None, results: dict[str, Any] | None = None) -> str:
    """README text of a student folder; ``log`` defaults to its ``train_log.json``, ``results`` to none."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    d, unet = config["distill"], config["unet"]
    log = log if log is not None else (_read(folder / "train_log.json") or {})
    steps = d.get("steps")
    lo, hi = d["w_range"]
    name = folder.name
    if steps is None:
        what = (f"stage 1: one w-conditioned network that predicts {d['origin']}'s classifier-free-guided output "
                "(one call per step instead of two); any solver, any number of steps")
        use_steps, cli_extra = config["defaults"].get("steps", 20), ""
    else:
        what = (f"stage 2: a {steps}-step sampler distilled progressively from {d['teacher']} "
                f"({d.get('teacher_steps')} DDIM steps); samples with exactly {steps} step{'s' if steps > 1 else ''}, "
                "deterministic (DDIM)" + (" or the paper's stochastic sampler" if steps > 1 else ": one call of the network"))
        use_steps, cli_extra = steps, " --sampler stochastic" if steps > 1 else ""
    weights = folder / "model.safetensors"
    lines = [
        f"# {name}", "",
        f"A guidance-distilled student (Meng et al., On Distillation of Guided Diffusion Models, arXiv 2210.03142) of "
        f"{d['origin']}, class-conditional Fashion-MNIST (28x28 gray), trained by us. {what[0].upper()}{what[1:]}.", "",
        "| | |", "|---|---|",
        f"| guidance | Meng et al.'s w in [{lo:g}, {hi:g}] as an input ({d['w_convention']}): CFG scales "
        f"{1 + lo:g} to {1 + hi:g}; default {config['defaults'].get('guidance')} |",
        f"| architecture | the teacher's UNet (channels {unet['channels']} x {unet['channel_mult']}) plus a guidance embedding |",
        f"| weights | `model.safetensors` ({config.get('weights_dtype')}, EMA), "
        f"{weights.stat().st_size / 2**20:.1f} MiB |" if weights.is_file() else "| weights | missing |",
        f"| prediction | {config['prediction']}; schedule {config['schedule']} |",
        f"| teacher | `{d['teacher']}` (origin `{d['origin']}`) |", "",
        "## Training", "",
    ]
    if log:
        lines += _training_lines(log)
    lines += ["## Sample quality", ""]
    digest = weights_digest(folder)
    rows = [r for r in (results or {}).get("results", [])
            if (r["weights_sha256"] == digest if r.get("weights_sha256") else r.get("model") in (str(folder), name))]
    if rows:
        lines += _result_lines(rows, results or {})
    else:
        lines += ["Not measured yet: `python -m decoding.evals.distill --teacher "
                  f"{d['origin']} --students {folder} --device cuda --out distill_eval.json`, then "
                  f"`python -m decoding.distill.card {folder} --eval distill_eval.json`.", ""]
    lines += [
        "## Use", "", "```python", "import decoding as dc",
        f'out = dc.generate(dc.load("{folder}"), class_label=7, n=16, steps={use_steps}, guidance=["cfg:1.5"], seed=0)',
        'out.grid().save("grid.png")', "```", "",
        f"or `decoding generate {folder} --class 7 --n 64 --steps {use_steps} --guidance cfg:1.5{cli_extra} --out grid.png`.", "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return cards_main("python -m decoding.distill.card", "Write README.md cards of distilled students.",
                      "results of python -m decoding.evals.distill (rows naming a folder go on its card)", render_card, argv)


if __name__ == "__main__":
    sys.exit(main())
