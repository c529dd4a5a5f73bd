"""Run an eval suite from Python and read its summary: the same runner as `decoding eval`.

    python examples/eval_suite.py                      # evals/quick.toml into runs/quick
    python examples/eval_suite.py --only radd --limit 200

Running it again into the same folder resumes: finished samples are kept, missing ones drawn.
"""

from __future__ import annotations

import argparse

from decoding.evals.runner import run_suite
from decoding.evals.suite import load_suite


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="evals/quick.toml")
    p.add_argument("--out", default="runs/quick")
    p.add_argument("--only", action="append", help="run only this task (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="at most this many samples per task")
    args = p.parse_args()

    summary = run_suite(load_suite(args.suite), args.out, only=args.only, limit=args.limit, progress=False)
    for task in summary["tasks"]:
        print(f"{task['name']} ({task['decoder']} on {task['model']}):")
        for c in task["configs"]:
            main_numbers = ", ".join(
                f"{k} {c[k]:.4g}" for k in task["primary"] if isinstance(c.get(k), (int, float))
            )
            print(f"  {c['label']:<32} NFE {c['nfe']:.3g}  {main_numbers}")
    print(f"report: {args.out}/report.md")


if __name__ == "__main__":
    main()
