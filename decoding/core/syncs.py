"""Counting host-device synchronisations: a loop that waits for the GPU every step cannot queue
the next kernels while the current ones run."""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PACKAGE = Path(__file__).resolve().parents[1]  # decoding/


def sync_stacks(fn: Callable[[], Any]) -> list[traceback.StackSummary]:
    """The Python stack at each CUDA synchronisation one call of ``fn()`` makes (innermost last).

    Uses ``torch.cuda.set_sync_debug_mode("warn")``: torch warns from the Python frame that called
    the synchronising op, and the stack is taken right there. Needs a CUDA device.
    """
    stacks: list[traceback.StackSummary] = []
    running = False  # only what fn() does: switching the debug mode on may itself warn (seen on an H100)

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        if running and "synchroniz" in str(message):
            stack = traceback.extract_stack()
            while stack and stack[-1].filename in (__file__, warnings.__file__):  # the hook, the warnings machinery
                stack.pop()
            stacks.append(stack)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            running = True
            fn()
        finally:
            running = False
            torch.cuda.set_sync_debug_mode(0)
    return stacks


def _site(stack: traceback.StackSummary, within: Path | None) -> str | None:
    """``"file.py:line"`` of the innermost frame (``within``: the innermost frame under that
    folder, as a path relative to its parent; None when no frame is there)."""
    frames = [f for f in stack if f.filename != "<string>"]
    if within is None:
        return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    for frame in reversed(frames):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(within):
            return f"{path.relative_to(within.parent)}:{frame.lineno}"
    return None


def count_syncs(fn: Callable[[], Any], within: str | Path | None = None) -> dict[str, int]:
    """``{"file.py:line": count}`` of the CUDA synchronisations one call of ``fn()`` makes.

    ``within`` (a folder, e.g. :data:`PACKAGE`): count only synchronisations made from code under
    it, each under the innermost such frame (a torch function that synchronises when this
    package calls it is charged to the calling line); synchronisations of the caller's own code
    (building inputs, a test's ``.cuda()``) are left out. Needs a CUDA device.
    """
    root = None if within is None else Path(within).resolve()
    where: dict[str, int] = {}
    for stack in sync_stacks(fn):
        key = _site(stack, root)
        if key is not None:
            where[key] = where.get(key, 0) + 1
    return where
