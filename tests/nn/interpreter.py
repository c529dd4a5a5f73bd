"""Run a file of Triton kernel cases in a fresh pytest process under ``TRITON_INTERPRET=1``.

The variable must be set before triton is imported, which the test process has already done; the
cases therefore run in a child process (one thread), and must all pass, none skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cases_under_interpreter(cases: str, timeout: int) -> None:
    """Run ``cases`` (a path relative to the repository root) and fail with its output if any case
    fails or is skipped."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / cases)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]
