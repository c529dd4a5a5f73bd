"""The output folder of an eval run, written only by atomic replaces (tmp file + ``os.replace``).

Layout::

    OUT/results.jsonl              one line per sample (rebuilt from the chunk files)
    OUT/summary.json               per task and config: settings and summarized metrics
    OUT/report.md, OUT/plots/*.png
    OUT/chunks/<task>/<config-id>/<name>.json          finished chunks (records)
    OUT/chunks/<task>/<config-id>/<name>.safetensors   their per-sample tensors (images)

A chunk file is written once and never rewritten: a second run into the same folder skips the
chunks it finds, so an interrupted run resumes and finished results are never overwritten.
The config id is a digest of everything that determines the samples, so editing a suite starts
fresh configs beside the old ones instead of mixing them.

A chunk's samples depend on how many it holds (the generator draws for all rows at once), so
its file name says so (:func:`chunk_name`): a full chunk is ``000003``, one cut short (a
config's last chunk, or by ``--limit``) ``000003-n5``. A run then finds exactly the chunks it
would draw itself: a chunk cut short by ``--limit`` is drawn again in full, and a run with fewer
``samples`` draws its own short last chunk beside the longer one of an earlier run. The count of
samples is not part of the config id, so a run with more samples reuses every full chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from decoding.io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "Store",
    "atomic_save_tensors",
    "chunk_name",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
]


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def chunk_name(chunk: int, size: int, batch: int) -> str:
    """The file name (without extension) of chunk ``chunk`` holding ``size`` of at most ``batch`` samples."""
    return f"{chunk:06d}" if size == batch else f"{chunk:06d}-n{size}"


class Store:
    """Reads and writes one output folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise NotADirectoryError(f"--out {self.out} exists and is not a folder")

    def config_dir(self, task: str, config_id: str) -> Path:
        return self.out / "chunks" / task / config_id

    def _chunk(self, task: str, config_id: str, chunk: str, ext: str) -> Path:
        return self.config_dir(task, config_id) / f"{chunk}.{ext}"

    def has_chunk(self, task: str, config_id: str, chunk: str) -> bool:
        """Whether the chunk named ``chunk`` (:func:`chunk_name`) is finished."""
        return self._chunk(task, config_id, chunk, "json").is_file()

    def write_chunk(
        self,
        task: str,
        config_id: str,
        chunk: str,
        records: list[dict[str, Any]],
        tensors: dict[str, Tensor],
        state: bytes | None = None,
    ) -> None:
        """Store a finished chunk: tensors and the job state after it first, the records last
        (a chunk whose ``.json`` exists is complete)."""
        if self.has_chunk(task, config_id, chunk):
            return  # finished results are never overwritten
        if tensors:
            atomic_save_tensors(self._chunk(task, config_id, chunk, "safetensors"), tensors)
        if state is not None:
            atomic_write_bytes(self._chunk(task, config_id, chunk, "state"), state)
        atomic_write_text(
            self._chunk(task, config_id, chunk, "json"), json.dumps({"records": records}) + "\n"
        )

    def read_records(self, task: str, config_id: str, chunks: Iterable[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for c in chunks:
            path = self._chunk(task, config_id, c, "json")
            try:
                out.extend(json.loads(path.read_text(encoding="utf-8"))["records"])
            except (OSError, ValueError, KeyError) as e:
                raise ValueError(
                    f"cannot read finished chunk {path}: {e}; delete it to draw it again"
                ) from None
        return out

    def read_tensor(self, task: str, config_id: str, chunks: Iterable[str], name: str) -> Tensor:
        """The per-sample tensor ``name`` of ``chunks``, concatenated in chunk order."""
        parts = []
        for c in chunks:
            path = self._chunk(task, config_id, c, "safetensors")
            if not path.is_file():
                raise ValueError(
                    f"{path} is missing (tensor {name!r}); delete its .json file to draw the chunk again"
                )
            parts.append(load_file(str(path))[name])
        if not parts:
            raise ValueError(f"no stored tensors {name!r} for {task}/{config_id}")
        return torch.cat(parts)

    def read_state(self, task: str, config_id: str, chunk: str) -> bytes:
        """The state a sequential job had after ``chunk`` (e.g. a grammar-aligned decoder's trie)."""
        path = self._chunk(task, config_id, chunk, "state")
        if not path.is_file():
            raise ValueError(
                f"{path} is missing: the learned state after chunk {chunk}; delete the folder {path.parent} to start the config again"
            )
        return path.read_bytes()
