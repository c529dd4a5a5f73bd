"""Model cards of the image models, written from what was measured (no number is typed by hand).

    python -m decoding.models.card models/fashion-large models/fashion-small

Reads ``config.json``, ``train_log.json`` and, when present, ``eval.json`` or ``eval_fid.json`` (from
``python -m decoding.evals.fid model ... --out <folder>/eval.json``) and ``samples.png``, and
writes ``README.md`` into each folder (atomically).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from decoding.io import atomic_write_bytes
from decoding.models.image import load_unet


def flops_per_image(folder: Path) -> tuple[int, float]:
    """(parameters, GFLOP of one network call on one image)."""
    net, _ = load_unet(folder)
    net.set_attention_backend("naive")
    x, lam, y = torch.zeros(1, 1, 28, 28), torch.zeros(1), torch.zeros(1, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x, lam, y)
    return sum(p.numel() for p in net.parameters()), fc.get_total_flops() / 1e9


def _schedule_text(d: dict[str, Any]) -> str:
    if d.get("type") == "discrete":
        return f"VP, diffusers' discrete `{d.get('beta_schedule')}` betas over {d.get('num_train_timesteps')} steps"
    return f"VP {d}"


def write_samples_png(folder: str | Path, device: str = "cpu", steps: int = 20, per_class: int = 10, seed: int = 0) -> Path:
    """``samples.png`` (+ ``samples.json``): ``per_class`` samples of each class, one row per class."""
    import decoding as dc

    handle = dc.load(folder, device)
    labels = torch.arange(handle.model.num_classes).repeat_interleave(per_class)
    out = dc.generate(handle, n=labels.numel(), class_label=labels, solver="dpmpp_2m", steps=steps, seed=seed)
    out.model = Path(folder).name
    png, _ = out.save(Path(folder) / "samples.png", nrow=per_class, scale=2)
    return png


def _ema_text(cfg: dict[str, Any]) -> str:
    if cfg.get("ema_std") is not None:
        return f"EDM2 power EMA sigma_rel {cfg['ema_std']} (arXiv 2312.02696)"
    return f"EMA decay {cfg.get('ema_decay')}"


def _training_lines(log: dict[str, Any]) -> list[str]:
    """The training section of a card from ``train_log.json`` (written by ``decoding train``)."""
    cfg = log.get("config", {})
    sessions = log.get("sessions") or []
    lines = [
        f"- reproduce: `{(sessions[0].get('command') if sessions else None) or log.get('command')}`"
        + (f", then `--resume` for {len(sessions) - 1} more session(s)" if len(sessions) > 1 else ""),
        f"- {log.get('steps')} of {log.get('planned_steps')} planned steps ({'finished' if log.get('finished') else 'NOT finished'}), "
        f"batch {cfg.get('batch_size')} ({log.get('epochs')} epochs), {log.get('seconds')} s of training "
        f"on {log.get('device')} (torch {log.get('torch')}), {len(sessions) or 1} session(s)",
        f"- AdamW lr {cfg.get('lr')} (warmup {cfg.get('warmup')}, cosine to {cfg.get('min_lr_ratio')} of it), "
        f"{_ema_text(cfg)}, bf16 autocast on CUDA, seed {cfg.get('seed')}",
    ]
    for key, label in (("final_loss", "final training loss"), ("final_valid_loss", "final validation loss (shipped weights)")):
        value = log.get(key)
        lines.append(f"- {label}: {value:.5f}" if isinstance(value, float) else f"- {label}: n/a")
    valid = (log.get("history") or {}).get("valid") or []
    if len(valid) >= 3:
        tail = ", ".join(f"{r['step']}: {r['loss']:.5f}" for r in valid[-4:])
        lines.append(f"- validation loss at the last checks (step: loss): {tail}")
    return [*lines, "", "![loss curve](loss.png)", ""]


def cards_main(prog: str, description: str, eval_help: str, render: Any, argv: list[str] | None = None,
               keep: Any = None) -> int:
    """The command line of a card writer: ``prog FOLDER... [--eval RESULTS.json]`` -> ``FOLDER/README.md`` = ``render(folder, None, results)``.

    ``keep(folder, results)``, when given, first stores in the folder what its card needs from ``--eval``.
    """
    import argparse

    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("folders", nargs="+")
    p.add_argument("--eval", help=eval_help)
    a = p.parse_args(argv)
    results = json.loads(Path(a.eval).read_text()) if a.eval else None
    for f in a.folders:
        if keep is not None and results is not None:
            keep(Path(f), results)
        atomic_write_bytes(Path(f) / "README.md", render(f, None, results).encode())
        print(f"wrote {f}/README.md")
    return 0


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def render_card(folder: str | Path) -> str:
    """The README.md text for a checkpoint folder."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    log = _read(folder / "train_log.json") or {}
    ev = _read(folder / "eval.json") or _read(folder / "eval_fid.json")
    params, gflops = flops_per_image(folder)
    name = folder.name
    unet = config["unet"]
    lines = [
        f"# {name}",
        "",
        "A class-conditional pixel-space diffusion UNet for Fashion-MNIST (28x28 gray, 10 classes), trained by us.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | UNet (`decoding.nn.unet`), channels {unet['channels']} x {unet['channel_mult']}, "
        f"{unet['num_res_blocks']} res blocks per level, self-attention at levels {unet['attention_levels']} and in the middle |",
        f"| parameters | {params:,} |",
        f"| cost per call | {gflops:.3f} GFLOP per image |",
        f"| weights | `model.safetensors` ({config.get('weights_dtype')}, EMA), {(folder / 'model.safetensors').stat().st_size / 2**20:.1f} MiB |",
        f"| prediction | {config['prediction']} (v = alpha eps - sigma x0) |",
        f"| noise schedule | {_schedule_text(config['schedule'])}; the network sees lambda = log(alpha/sigma) |",
        f"| conditioning | class 0-{unet['num_classes'] - 1}; {unet['num_classes']} = null class (labels dropped with p = {config.get('training', {}).get('label_dropout')}) for classifier-free guidance |",
        f"| data | {config.get('data', 'Fashion-MNIST train')} |",
        "",
        "Classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(config.get("classes", []))) + ".",
        "",
        "## Training",
        "",
    ]
    if log:
        lines += _training_lines(log)
    lines += ["## Sample quality", ""]
    if ev:
        lines += [
            f"{ev.get('note')}. Command: `{ev.get('command')}` on {ev.get('device_name')}.",
            "",
            "images/s: sampling wall time of the run in batches of 1000, first-call warm-up included.",
            "",
            "| solver | NFE | guidance | samples | FID | class accuracy (our classifier) | images/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in ev["results"]:
            acc = f"{r['class_accuracy']:.3f}" if "class_accuracy" in r else "-"
            lines.append(f"| {r['solver']} | {r['nfe']} | {r['guidance']} | {r['n']} | {r['fid']:.2f} | {acc} | {r['images_per_second']} |")
        lines.append("")
    else:
        lines += ["Not measured yet: run `python -m decoding.evals.fid model --model "
                  f"{folder} --nfe 10 20 50 --device cuda --out {folder}/eval.json`.", ""]
    if (folder / "samples.png").is_file():
        meta = _read(folder / "samples.json") or {}
        lines += [
            f"Samples (`samples.png`): one row per class, {meta.get('solver', '?')} with {meta.get('steps', '?')} steps, "
            f"seed {meta.get('seed', '?')}, {meta.get('device', '?')} {meta.get('dtype', '')} "
            f"(`python -m decoding.models.card --samples {folder}`):",
            "",
            "![samples: one row per class](samples.png)",
            "",
        ]
    lines += [
        "## Use",
        "",
        "```python",
        "import decoding as dc",
        f'out = dc.generate(dc.load("{name}"), class_label=7, n=16, solver="dpmpp_2m", steps=10, seed=0)',
        'out.grid().save("grid.png")',
        "```",
        "",
        f"or `decoding generate {name} --class 7 --n 64 --solver dpmpp_2m --steps 10 --out grid.png`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m decoding.models.card", description="Write README.md model cards.")
    p.add_argument("folders", nargs="+")
    p.add_argument("--samples", action="store_true", help="also (re)draw samples.png: 10 per class, dpmpp_2m, 20 steps, seed 0")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    for f in a.folders:
        if a.samples:
            print(f"wrote {write_samples_png(f, a.device)}")
        atomic_write_bytes(Path(f) / "README.md", render_card(f).encode())
        print(f"wrote {f}/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
