"""Atomic file writes: readers see the old file or the new one, never a part of either.

Every file the engine writes (images, JSON, JSONL, safetensors checkpoints, trie files, eval
outputs) goes through :func:`atomic_write_bytes` or :func:`atomic_path`: a temporary file in the
same folder, flushed to disk, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """``0o666`` less the process umask: what ``open()`` would give (``mkstemp`` gives ``0o600``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is synced and renamed over ``path``.

    For writers that want a file name (``safetensors.torch.save_file``). On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=True, default=str) + "\n")


def check_writable(*paths: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` naming the problem unless each path can be written as a file (before any work is done).

    A path fails when it is a folder, when the nearest existing folder above it is a file, or when that
    folder is not writable; missing folders in between are fine (:func:`atomic_path` creates them).
    """
    for p in map(Path, paths):
        if p.is_dir():
            raise ValueError(f"cannot write {p}: it is a folder; give a file name")
        above = p.parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise ValueError(f"cannot write {p}: {above} is a file, not a folder")
        if not os.access(above, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write {p}: no permission to write in {above}")
