"""Weights on disk: safetensors files (through the ``safetensors`` package) written atomically.

Every writer of model weights and training checkpoints goes through :func:`save_tensors` /
:func:`save_model_folder` and :func:`decoding.io.atomic_write_bytes`: the bytes go to a temporary
file in the target folder, are flushed to disk, and the file is renamed over the target, so a
reader (or a killed run) sees the old file or the new one, never a part. Tensors are stored in the
safetensors format (https://github.com/huggingface/safetensors): an 8-byte header length, a JSON
header, raw little-endian data; no pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as _safetensors_bytes
from torch import Tensor

from decoding.io import atomic_write_bytes


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def tensors_bytes(tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors encoding of ``tensors`` (moved to the CPU, made contiguous).

    Tensors that share memory (tied weights appear under two names in a ``state_dict``) are
    copied, so each name gets its own data, as a reader expects.
    """
    seen: set[int] = set()
    out: dict[str, Tensor] = {}
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"tensor {name!r} is a {type(t).__name__}, not a torch.Tensor")
        t = t.detach().to("cpu").contiguous()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    meta = None if metadata is None else {str(k): str(v) for k, v in metadata.items()}
    return _safetensors_bytes(out, metadata=meta)


def save_tensors(tensors: dict[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> int:
    """Write ``tensors`` to the safetensors file ``path`` atomically; returns the file's size in bytes."""
    data = tensors_bytes(tensors, metadata)
    atomic_write_bytes(path, data)
    return len(data)


def load_tensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file: ``(name -> tensor on the CPU, metadata)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a valid safetensors file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # the package raises its own SafetensorError for corrupt files
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(f"{path} is not a valid safetensors file: {e}") from None
    return tensors, meta


def storage_bytes(tensors: dict[str, Tensor]) -> int:
    """Bytes of tensor data in ``tensors`` (without the file header)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


def dtype_from_name(name: str) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16`` (floating dtypes only); a clear error otherwise."""
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"unknown floating dtype {name!r}; use float32, float16 or bfloat16")
    return dtype


def save_model_folder(
    folder: str | Path,
    state: dict[str, Tensor],
    config: dict[str, Any],
    dtype: torch.dtype | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a model folder: ``model.safetensors`` (floating tensors cast to ``dtype``; default their
    own) and ``config.json`` (``config``, plus ``"dtype"`` when ``dtype`` is given), each atomically.

    The weights go first, so a folder whose ``config.json`` is new also has its new weights.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    cast = {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()) for k, v in state.items()}
    save_tensors(cast, out / "model.safetensors", metadata=metadata)
    cfg = dict(config)
    if dtype is not None:
        cfg["dtype"] = str(dtype).removeprefix("torch.")
    atomic_write_bytes(out / "config.json", (json.dumps(cfg, indent=2) + "\n").encode())
    return out
