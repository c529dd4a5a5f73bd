"""The resume checkpoint of a training run: tensors in safetensors shards, the rest in JSON.

A checkpoint folder holds ``state.json`` and the shards it names::

    DIR/state.json                          JSON: step, sampler, history, config, shard list (with sha256)
    DIR/ckpt-<step>-<token>-00.safetensors  tensors, at most ``shard_bytes`` per file (header included)
    DIR/ckpt-<step>-<token>-01.safetensors  ...

Writing is atomic at the level of the whole checkpoint: the new shards are written (each atomically
and flushed to disk) under new names, then ``state.json`` is replaced by a rename, which is the
commit; only then are the previous checkpoint's shards (and any files a killed write left) deleted.
A run killed at any point leaves a ``state.json`` whose shards are all present and whole. Readers check every shard's size and sha256,
so a truncated or half-copied transfer is reported, not loaded.

A tensor larger than a shard is cut into pieces (``name#0``, ``name#1``, ...) and joined on reading.
No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.data.weights import fsync_dir, tensors_bytes
from decoding.io import atomic_write_bytes

FORMAT = "decoding-train-checkpoint"
VERSION = 1
STATE_FILE = "state.json"
#: Default shard limit: 15 MB (decimal), under the 16 MiB per-file limit of our GPU transfers.
SHARD_BYTES = 15_000_000
_SHARD_RE = re.compile(r"^ckpt-.*\.safetensors$")
_TEMP_RE = re.compile(r"^\.(ckpt-.*\.safetensors|state\.json)\..*\.tmp$")  # left by a killed atomic write
_HEADER_PER_TENSOR = 160  # JSON header bytes per entry: name + dtype + shape + offsets, generously
_HEADER_FIXED = 1024


class CheckpointNotFoundError(FileNotFoundError):
    """The folder holds no checkpoint (no ``state.json``)."""


class CheckpointCorruptError(ValueError):
    """A checkpoint file is missing, truncated or altered (the message names it)."""


@dataclass
class WrittenCheckpoint:
    """What :func:`write_checkpoint` wrote: the files (``state.json`` last) and their sizes."""

    files: list[Path]
    shard_sizes: list[int]
    state_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(self.shard_sizes) + self.state_bytes


def _entry_bytes(name: str, t: Tensor) -> int:
    return t.numel() * t.element_size() + _HEADER_PER_TENSOR + len(name.encode())


def _pieces(tensors: dict[str, Tensor], shard_bytes: int) -> tuple[list[tuple[str, Tensor]], dict[str, list[int]]]:
    """Cut tensors that cannot fit one shard into flat pieces; returns the entries and the cut tensors' shapes."""
    room = shard_bytes - _HEADER_FIXED - _HEADER_PER_TENSOR - 64
    entries: list[tuple[str, Tensor]] = []
    split: dict[str, list[int]] = {}
    for name, t in tensors.items():
        if "#" in name:
            raise ValueError(f"checkpoint tensor names may not contain '#': {name!r}")
        t = t.detach().to("cpu").contiguous()
        if _entry_bytes(name, t) + _HEADER_FIXED <= shard_bytes:
            entries.append((name, t))
            continue
        per = max(1, room // t.element_size())
        flat = t.reshape(-1)
        split[name] = list(t.shape)
        for k, start in enumerate(range(0, flat.numel(), per)):
            entries.append((f"{name}#{k}", flat[start : start + per].clone()))
    return entries, split


def _pack(entries: list[tuple[str, Tensor]], shard_bytes: int) -> list[dict[str, Tensor]]:
    """Greedy packing in order: a new shard when the next entry would push the file past the limit."""
    shards: list[dict[str, Tensor]] = [{}]
    used = _HEADER_FIXED
    for name, t in entries:
        size = _entry_bytes(name, t)
        if shards[-1] and used + size > shard_bytes:
            shards.append({})
            used = _HEADER_FIXED
        shards[-1][name] = t
        used += size
    return shards


def write_checkpoint(
    folder: str | Path, tensors: dict[str, Tensor], state: dict[str, Any], shard_bytes: int = SHARD_BYTES
) -> WrittenCheckpoint:
    """Write a checkpoint into ``folder`` atomically (see the module docstring).

    Args:
        tensors: name -> tensor (any device and dtype safetensors stores).
        state: JSON-serialisable rest of the state; must hold ``"step"`` (int).
        shard_bytes: the largest shard file, header included.

    Raises:
        ValueError: a file would exceed ``shard_bytes`` (a bug in the packing), or bad names/state.
    """
    if shard_bytes < 64 * 1024:
        raise ValueError(f"shard size must be at least 64 KiB, got {shard_bytes} bytes")
    if "step" not in state:
        raise ValueError("the checkpoint state needs a 'step'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries, split = _pieces(tensors, shard_bytes)
    token = f"{int(state['step']):08d}-{secrets.token_hex(3)}"
    files: list[Path] = []
    shard_list: list[dict[str, Any]] = []
    sizes: list[int] = []
    for i, shard in enumerate(_pack(entries, shard_bytes)):
        data = tensors_bytes(shard, metadata={"format": FORMAT})
        if len(data) > shard_bytes:
            raise ValueError(f"shard {i} would be {len(data)} bytes, over the limit of {shard_bytes}")
        path = folder / f"ckpt-{token}-{i:02d}.safetensors"
        atomic_write_bytes(path, data)
        files.append(path)
        sizes.append(len(data))
        shard_list.append({"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                           "tensors": sorted(shard)})
    doc = {"format": FORMAT, "version": VERSION, **state, "shards": shard_list, "split": split}
    text = (json.dumps(doc, indent=1) + "\n").encode()
    atomic_write_bytes(folder / STATE_FILE, text)  # the commit
    files.append(folder / STATE_FILE)
    keep = {p.name for p in files}
    for old in folder.iterdir():
        if (_SHARD_RE.match(old.name) and old.name not in keep) or _TEMP_RE.match(old.name):
            old.unlink(missing_ok=True)
    fsync_dir(folder)
    return WrittenCheckpoint(files=files, shard_sizes=sizes, state_bytes=len(text))


def has_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` holds a committed checkpoint (a ``state.json``)."""
    return (Path(folder) / STATE_FILE).is_file()


def read_state(folder: str | Path) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint (no tensors read, nothing verified but the format)."""
    path = Path(folder) / STATE_FILE
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointNotFoundError(f"no checkpoint in {folder} (no {STATE_FILE})") from None
    except json.JSONDecodeError as e:
        raise CheckpointCorruptError(f"{path} is not valid JSON ({e}); copy the checkpoint again") from None
    wrong = {k: doc.get(k) for k, want in (("format", FORMAT), ("version", VERSION)) if doc.get(k) != want}
    if wrong:
        raise CheckpointCorruptError(f"{path}: {wrong} instead of format {FORMAT!r}, version {VERSION}")
    return doc


def read_checkpoint(folder: str | Path, device: torch.device | str = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors on device, state)`` of the checkpoint in ``folder``, every shard verified.

    Raises:
        CheckpointNotFoundError: no checkpoint there.
        CheckpointCorruptError: a shard is missing, has the wrong size or hash.
    """
    from safetensors.torch import load as load_bytes

    folder = Path(folder)
    doc = read_state(folder)
    tensors: dict[str, Tensor] = {}
    for shard in doc["shards"]:
        path = folder / shard["file"]
        if not path.is_file():
            raise CheckpointCorruptError(f"checkpoint shard {path} is missing; copy the whole folder {folder}")
        data = path.read_bytes()
        if len(data) != shard["bytes"] or hashlib.sha256(data).hexdigest() != shard["sha256"]:
            raise CheckpointCorruptError(
                f"checkpoint shard {path} is damaged ({len(data)} bytes, expected {shard['bytes']}, or its sha256 "
                "differs); copy it again"
            )
        tensors.update(load_bytes(data))
    for name, shape in doc.get("split", {}).items():
        keys = sorted((k for k in tensors if k.startswith(name + "#")), key=lambda k: int(k.rsplit("#", 1)[1]))
        tensors[name] = torch.cat([tensors.pop(k) for k in keys]).reshape(shape)
    dev = torch.device(device)
    if dev.type != "cpu":
        tensors = {k: v.to(dev) for k, v in tensors.items()}
    return tensors, doc
