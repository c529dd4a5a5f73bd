"""Run an example script the way a user would (``python examples/x.py ARGS``), inside the test process."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(path: str, args: list[str], capsys) -> str:  # noqa: ANN001
    """Run ``path`` (relative to the repository root) as ``__main__`` with ``args``; return its stdout."""
    path = str(ROOT / path)
    old = sys.argv
    sys.argv = [path, *args]
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = old
    return capsys.readouterr().out
