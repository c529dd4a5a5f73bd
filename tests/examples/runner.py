"""Run an example script the way a user would (``python examples/x.py ARGS``), inside the test process."""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path
from types import ModuleType

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


def load_script(path: str, name: str | None = None) -> ModuleType:
    """Import a script of the repository (``benchmarks/x.py``, ``examples/x.py``) as a module, without running it."""
    file = ROOT / path
    spec = importlib.util.spec_from_file_location(name or file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
