"""``decoding train MODEL``: train (or continue training) a model of the zoo.

Examples::

    decoding train fashion-large --steps 20000 --minutes 9 --device cuda --compile --data .gpudata \\
        --checkpoint runs/fashion-large/checkpoint --out runs/fashion-large/model
    decoding train fashion-large --resume --minutes 9 --device cuda --data .gpudata \\
        --checkpoint runs/fashion-large/checkpoint --out runs/fashion-large/model
    decoding train radd-brown --help          # the options of one model, with its preset values
    decoding train --list                     # the trainable models

Also ``python -m decoding.train MODEL ...`` (no installation needed). A run is resumable:
``--checkpoint DIR`` receives a checkpoint every ``--checkpoint-minutes`` and at the end of the
session; ``--resume`` continues it exactly (same options; only session options such as
``--minutes``, ``--stop-at``, ``--device``, ``--compile``, ``--data`` may change).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from decoding.train.task import TrainOptions

_SCALARS = {"int": int, "float": float, "str": str}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or resume a model of the zoo (fashion-large, radd-brown, ...)",
        description=__doc__.split("\n\n")[0] + " `decoding train --list` lists the models, "
        "`decoding train MODEL --help` a model's options.",
    )
    p.add_argument("model", nargs="?", help="the model to train (see --list)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the model's options (decoding train MODEL --help)")
    p.add_argument("--list", action="store_true", help="list the trainable models")
    p.add_argument("--replot", metavar="FOLDER", help="redraw FOLDER/loss.png from FOLDER/train_log.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from decoding.cli.main import UsageError
    from decoding.train.recipes import RECIPES

    if args.list:  # with a model: that model's line only (an unknown name is an error, not the whole list)
        if args.model and args.model not in RECIPES:
            raise UsageError(f"no trainable model {args.model!r}; the models: {', '.join(RECIPES)}")
        for name, r in RECIPES.items():
            if args.model in (None, name):
                print(f"{name:20s} {r.summary}")
        return 0
    if args.replot:
        return replot(args.replot)
    if not args.model:
        raise UsageError("name a model to train: decoding train MODEL (decoding train --list shows them)")
    return train_main(args.model, args.rest)


def replot(folder: str) -> int:
    import json

    from decoding.train.plot import plot_history

    log_path = Path(folder) / "train_log.json"
    if not log_path.is_file():
        raise FileNotFoundError(f"{log_path} does not exist; --replot needs a folder written by decoding train")
    log = json.loads(log_path.read_text())
    png = plot_history(log["history"], Path(folder) / "loss.png", f"{log['model']}: {log['steps']} steps")
    print(f"wrote {png}")
    return 0


# ---- the per-model parser, built from the dataclasses -------------------------------------------


def _field_help(cls: type) -> dict[str, str]:
    """Per-field help from the class docstring's ``Attributes:`` section (``a, b: text`` lines)."""
    doc = cls.__doc__ or ""
    if "Attributes:" not in doc:
        return {}
    out: dict[str, str] = {}
    current: list[str] = []
    for line in doc.split("Attributes:", 1)[1].splitlines():
        m = re.match(r"^\s{8}([a-z_0-9, /]+): (.*)$", line)
        if m:
            current = [n.strip() for n in re.split(r"[,/]", m.group(1)) if n.strip()]
            for n in current:
                out[n] = m.group(2).strip()
        elif line.strip() and current and line.startswith(" " * 12):
            for n in current:
                out[n] += " " + line.strip()
        elif not line.strip():
            current = []
    return {k: re.sub(r":\w+:`~?([^`]+)`", r"\1", v).replace("``", "") for k, v in out.items()}


def _add_fields(group: argparse._ArgumentGroup, cls: type, preset: dict[str, Any], skip: set[str]) -> set[str]:
    helps = _field_help(cls)
    names = set()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        names.add(f.name)
        flag = "--" + f.name.replace("_", "-")
        default = preset.get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        text = f"{helps.get(f.name, '')} (default: {default})".strip()
        kind = str(f.type).replace(" ", "")
        base = kind.removesuffix("|None")
        if base == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
        elif base == "list[int]":
            group.add_argument(flag, type=int, nargs="+", default=argparse.SUPPRESS, metavar="N", help=text)
        elif base in _SCALARS:
            group.add_argument(flag, type=_SCALARS[base], default=argparse.SUPPRESS, help=text)
        else:  # pragma: no cover - a new field type needs a line above
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line type for {f.type!r}")
    return names


def build_parser(model: str) -> tuple[argparse.ArgumentParser, set[str], set[str]]:
    """The parser of ``decoding train MODEL`` and the names of the skeleton's and the task's options."""
    from decoding.train.recipes import recipe

    r = recipe(model)
    p = argparse.ArgumentParser(prog=f"decoding train {model}", description=f"Train {model}: {r.summary}.")
    run = p.add_argument_group("run")
    run.add_argument("--checkpoint", default=f"runs/{model}/checkpoint", help="resume checkpoint folder (default: %(default)s)")
    run.add_argument("--out", default=f"runs/{model}/model", help="shipped model folder (default: %(default)s)")
    run.add_argument("--resume", action="store_true", help="continue the checkpoint in --checkpoint")
    run.add_argument("--no-export", action="store_true", help="write only the checkpoint, not --out")
    run.add_argument("--export-only", action="store_true", help="write --out from --checkpoint, no training, no data")
    run.add_argument("--benchmark", action="store_true", help="time training steps (eager vs compiled); nothing is saved")
    run.add_argument("--benchmark-steps", type=int, default=20, help="timed steps per benchmark variant (default: %(default)s)")
    run.add_argument("--benchmark-profile", action="store_true", help="with --benchmark: print where the reference's step time goes")
    task_group = p.add_argument_group(f"{model} ({r.task_cls.__name__})")
    task_names = _add_fields(task_group, r.config_cls, r.config, skip=set())
    opt_group = p.add_argument_group("training (every model)")
    opt_names = _add_fields(opt_group, TrainOptions, {**_option_defaults(), **r.options}, skip=task_names)
    return p, opt_names, task_names


def _option_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(TrainOptions)}


def _settings(model: str, given: dict[str, Any], opt_names: set[str], task_names: set[str], resume: bool,
              checkpoint: Path) -> tuple[TrainOptions, dict[str, Any]]:
    """Options and task config: the preset (or, with --resume, the checkpoint's) with the given values on top."""
    from decoding.train.checkpoint import read_state
    from decoding.train.recipes import recipe

    r = recipe(model)
    if resume:
        state = read_state(checkpoint)
        if state.get("model") != model:
            raise ValueError(f"{checkpoint} holds a checkpoint of {state.get('model')!r}, not {model!r}")
        options = dict(state["options"])
        options["stop_at"] = None  # a session option that must not carry over
        config = dict(state["task"]["config"])
    else:
        options = {**_option_defaults(), **r.options}
        defaults = {f.name: f.default for f in dataclasses.fields(r.config_cls) if f.default is not dataclasses.MISSING}
        config = {**defaults, **r.config}
    for k, v in given.items():
        if k in task_names:
            config[k] = v
        elif k in opt_names:
            options[k] = v
    return TrainOptions(**options), config


def train_main(model: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` for ``model`` and run the session (or export / benchmark)."""
    from decoding.train.loop import Trainer
    from decoding.train.recipes import recipe

    r = recipe(model)
    parser, opt_names, task_names = build_parser(model)
    args = parser.parse_args(list(argv))
    given = {k: v for k, v in vars(args).items() if k in opt_names | task_names}
    if args.benchmark_profile and not args.benchmark:
        raise ValueError("--benchmark-profile applies with --benchmark (it profiles the benchmark's reference step)")
    checkpoint = Path(args.checkpoint)
    for flag, folder in (("--checkpoint", checkpoint), ("--out", None if args.no_export else Path(args.out))):
        if folder is not None and folder.exists() and not folder.is_dir():  # before any training, not after it
            raise ValueError(f"{flag} {folder} is a file; give a folder (it is created if missing)")
    resume = args.resume or args.export_only
    options, config = _settings(model, given, opt_names, task_names, resume, checkpoint)
    if args.export_only and "device" not in given:
        options.device = "cpu"  # a checkpoint written on a GPU is exported anywhere
    task = r.make_task(config)
    if args.benchmark:
        from decoding.train.speed import benchmark

        benchmark(model, task, options, steps=args.benchmark_steps, profile=args.benchmark_profile)
        return 0
    command = "decoding train " + " ".join(shlex.quote(a) for a in [model, *argv])
    out = None if args.no_export else Path(args.out)
    trainer = Trainer(model, task, options, checkpoint, out, resume=resume, command=command)
    if args.export_only:
        files = trainer.export_checkpoint()
        print(f"exported {model} from {checkpoint} to {args.out}: {', '.join(p.name for p in files)}")
        return 0
    result = trainer.run()
    ck = result.checkpoint
    assert ck is not None
    print(f"{model}: step {result.step} of {result.total} ({result.reason}) in {result.seconds:.0f} s; checkpoint "
          f"{checkpoint} ({len(ck.files)} files, {ck.total_bytes / 1e6:.1f} MB)"
          + (f"; model in {out}" if out is not None else ""))
    if not result.finished:
        print(f"continue with: decoding train {model} --resume --checkpoint {shlex.quote(str(checkpoint))} --minutes M")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m decoding.train MODEL ...``: the same as ``decoding train MODEL ...``."""
    from decoding.cli.main import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])
