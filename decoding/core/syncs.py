"""Counting host-device synchronisations: a loop that waits for the GPU every step cannot queue
the next kernels while the current ones run."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def count_syncs(fn: Callable[[], Any]) -> dict[str, int]:
    """``{"file.py:line": count}`` of the CUDA synchronisations one call of ``fn()`` makes.

    Uses ``torch.cuda.set_sync_debug_mode("warn")``; needs a CUDA device.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    where: dict[str, int] = {}
    for w in caught:
        if "synchroniz" in str(w.message):
            key = f"{Path(w.filename).name}:{w.lineno}"
            where[key] = where.get(key, 0) + 1
    return where
