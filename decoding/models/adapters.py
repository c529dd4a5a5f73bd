"""Folders of guidance adapters (AGD, arXiv 2503.07274): ``config.json`` + ``adapters.safetensors`` + ``README.md``.

An adapter folder holds only the adapters (a few hundred kB), never the base model. Its
``config.json``::

    {"kind": "guidance-adapters", "format": "decoding-guidance-adapters",
     "adapters": AdapterConfig, "scale_range": [lo, hi], "default_scale": s,
     "base": {"name": ..., "unet": UNetConfig, "prediction": "v", "schedule": {...}, "fingerprint": sha256}, ...}

The base model is checked when the adapters are attached: its UNet config, parameterisation and
schedule must equal the recorded ones, and its weights must hash to the recorded fingerprint
(:func:`base_fingerprint`, over the weights rounded to bfloat16, so a model loaded in float32 or
bfloat16 from the same file matches).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from decoding.io import atomic_path, atomic_write_bytes
from decoding.models.image import CheckpointError, models_root, read_card
from decoding.nn.guidance_adapter import AdapterConfig, GuidanceAdapters
from decoding.nn.unet import UNet

FORMAT = "decoding-guidance-adapters"
KIND = "guidance-adapters"
WEIGHTS = "adapters.safetensors"


class AdapterError(CheckpointError):
    """An adapter folder is missing or malformed, or belongs to another base model."""


def base_fingerprint(net: UNet) -> str:
    """sha256 of the UNet's weights rounded to bfloat16 (names sorted): the identity of a base model."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        if not t.is_floating_point():
            continue
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def default_adapter_folder(base_name: str) -> Path:
    """Where ``agd:S`` looks for a base model's adapters: ``<base folder>-agd`` next to a folder, else ``models/<name>-agd``."""
    p = Path(base_name)
    if p.is_dir():
        return p.parent / f"{p.name}-agd"
    return models_root() / f"{base_name}-agd"


def save_adapters(adapters: GuidanceAdapters, out: str | Path, meta: dict[str, Any], dtype: torch.dtype = torch.float32) -> Path:
    """Write ``adapters.safetensors`` (the adapters only, ``dtype``) and ``config.json`` (``meta`` + the adapter sizes)."""
    out = Path(out)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in adapters.state_dict().items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    config = {"kind": KIND, "format": FORMAT, "adapters": adapters.cfg.to_dict(), **meta,
              "weights_dtype": str(dtype).removeprefix("torch.")}
    atomic_write_bytes(out / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    return out


def read_adapter_config(folder: str | Path, base_name: str = "the base model") -> dict[str, Any]:
    """The checked ``config.json`` of an adapter folder (errors say how to make or name one)."""
    folder = Path(folder)
    hint = f"train them with `decoding train agd-fashion --base {base_name} --out {folder}`, or name a folder: agd:SCALE,adapters=FOLDER"
    if not folder.is_dir():
        raise AdapterError(f"no AGD adapters for {base_name}: {folder} does not exist; {hint}")
    path = folder / "config.json"
    config = read_card(path, FORMAT, AdapterError, f"not an AGD adapter folder; {hint}")
    for key in ("adapters", "base", "scale_range"):
        if key not in config:
            raise AdapterError(f"{path}: missing the {key!r} entry")
    if not (folder / WEIGHTS).is_file():
        raise AdapterError(f"{folder} has no {WEIGHTS}")
    return config


def check_base(config: dict[str, Any], folder: Path, net: UNet, prediction: str, schedule: dict[str, Any] | None,
               base_name: str) -> None:
    """Raise :class:`AdapterError` when ``net`` is not the base model the adapters were trained on."""
    base = config["base"]
    trained_on = base.get("name", "?")
    if base.get("unet") != net.cfg.to_dict():
        raise AdapterError(f"the AGD adapters in {folder} were trained on {trained_on} (UNet {base.get('unet')}); "
                           f"{base_name} has another architecture (UNet {net.cfg.to_dict()}): use adapters trained on {base_name}")
    if base.get("prediction") != prediction or (schedule is not None and base.get("schedule") != schedule):
        raise AdapterError(f"the AGD adapters in {folder} were trained on {trained_on} ({base.get('prediction')}-prediction, "
                           f"schedule {base.get('schedule')}); {base_name} predicts {prediction} with schedule {schedule}")
    if base.get("fingerprint") != base_fingerprint(net):
        raise AdapterError(f"the AGD adapters in {folder} were trained on {trained_on}, whose weights differ from "
                           f"{base_name}'s (fingerprint mismatch): the adapters only fit the exact frozen base model they were trained on")


def load_adapters(folder: str | Path, net: UNet, prediction: str, schedule: dict[str, Any] | None = None,
                  base_name: str = "the base model") -> tuple[GuidanceAdapters, dict[str, Any]]:
    """The adapters of ``folder`` for the base ``net`` (checked, float32 on ``net``'s device, eval mode) and their config."""
    folder = Path(folder)
    config = read_adapter_config(folder, base_name)
    check_base(config, folder, net, prediction, schedule, base_name)
    try:
        cfg = AdapterConfig.from_dict(config["adapters"])
    except (TypeError, ValueError) as e:
        raise AdapterError(f"{folder}/config.json: bad 'adapters' entry: {e}") from None
    adapters = GuidanceAdapters(cfg)
    state = load_file(str(folder / WEIGHTS))
    expected = adapters.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise AdapterError(f"{folder}/{WEIGHTS} does not match its config.json (names or shapes differ); re-export the adapters")
    adapters.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    device = next(net.parameters()).device
    return adapters.to(device).eval().requires_grad_(False), config
