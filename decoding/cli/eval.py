"""``decoding eval SUITE.toml --out FOLDER``: run an eval suite (resumable; torchrun for many GPUs).

Examples::

    decoding eval evals/quick.toml --out runs/quick
    torchrun --nproc-per-node 2 -m decoding eval evals/image.toml --out runs/image --device cuda
    decoding eval --list
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="run an eval suite (TOML) and write results.jsonl, summary.json, report.md and plots",
        description=(
            "Run the tasks of an eval suite. Running again into the same --out folder resumes: "
            "finished samples are kept, missing ones are drawn. Under torchrun the samples are "
            "sharded over the processes and give the same results for any number of them."
        ),
    )
    p.add_argument("suite", nargs="?", help="suite file, e.g. evals/quick.toml")
    p.add_argument("--out", help="output folder (created; reused to resume)")
    p.add_argument(
        "--device", default="cpu", help="torch device: cpu or cuda (under torchrun: cuda:LOCAL_RANK)"
    )
    p.add_argument("--limit", type=int, default=None, help="at most this many samples per task (smoke runs)")
    p.add_argument(
        "--only", action="append", default=None, metavar="TASK", help="run only this task (repeatable)"
    )
    p.add_argument("--no-report", action="store_true", help="skip report.md and the plots")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--list", action="store_true", help="list the models, decoders and metrics suites may name"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from decoding.cli.main import UsageError
    from decoding.evals import tasks
    from decoding.evals.distributed import init_world, shutdown
    from decoding.evals.runner import run_suite
    from decoding.evals.suite import load_suite

    if args.list:
        print(tasks.describe())
        return 0
    if not args.suite or not args.out:
        raise UsageError("usage: decoding eval SUITE.toml --out FOLDER (see decoding eval --help)")
    suite = load_suite(args.suite)
    tasks.check_names(suite)  # names first: a typo fails before any process group or model
    world, device = init_world(args.device)
    try:
        summary = run_suite(
            suite,
            Path(args.out),
            device=device,
            world=world,
            progress=not args.no_progress,
            limit=args.limit,
            only=args.only,
            report=not args.no_report,
        )
    finally:
        shutdown(world)
    if summary is not None:
        n = sum(c["samples"] for t in summary["tasks"] for c in t["configs"])
        print(
            f"{n} samples in {len(summary['tasks'])} task(s); results in {args.out}/ (report.md, summary.json, results.jsonl)"
        )
    return 0
