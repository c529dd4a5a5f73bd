"""The one result type of :func:`decoding.generate`, whatever the model's kind."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from decoding.io import atomic_write_bytes, check_writable


@dataclass
class Generation:
    """What :func:`decoding.generate` returns.

    Per-sample lists are in sample order: for text, prompt-major (all ``n`` samples of prompt 0
    first; :attr:`prompt_index` says which prompt each came from).

    Attributes:
        kind: the model's kind (``"causal-lm"``, ``"masked-diffusion"``, ``"any-subset"``,
            ``"image-diffusion"``).
        model: the model's name.
        text: decoded text per sample (text kinds), else None.
        tokens: token ids per sample: the generated ids (causal LM, EOS kept when it ended the
            sample) or the whole sequence (masked and any-subset models); None for images.
        images: ``(N, C, H, W)`` float32 in [-1, 1] on the CPU (image kinds), else None.
        labels: ``(N,)`` class of each image (``num_classes`` = unconditional), else None.
        nfe: model evaluations spent on each sample (guidance counts each of its calls).
        finish_reason: per sample: ``"eos"``, ``"stop"`` (a stop string), ``"length"`` (token
            budget reached) or ``"complete"`` (every position / step done: diffusion kinds).
        seconds: wall time of decoding (model loading excluded).
        settings: everything needed to reproduce the output (model, options, seed, device, dtype...).
        prompt_index: which prompt each sample belongs to (text kinds).
        info: per-sample extras of a kind, each a list of length N (e.g. ``budget_limited``).
    """

    kind: str
    model: str
    nfe: list[float]
    finish_reason: list[str]
    seconds: float
    settings: dict[str, Any]
    text: list[str] | None = None
    tokens: list[list[int]] | None = None
    images: Tensor | None = None
    labels: Tensor | None = None
    prompt_index: list[int] | None = None
    info: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.nfe)

    # ---- images ------------------------------------------------------------------------------
    def _require_images(self) -> Tensor:
        if self.images is None:
            raise ValueError(f"this generation holds {self.kind} output, not images")
        return self.images

    def uint8(self) -> Tensor:
        """``(N, C, H, W)`` uint8 in [0, 255] (as a saved PNG holds them)."""
        return ((self._require_images().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def pil_images(self) -> list[Image.Image]:
        """One PIL image per sample (mode ``L`` for gray, ``RGB`` for 3 channels)."""
        arr = self.uint8().permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]

    def grid(self, nrow: int | None = None, padding: int = 2, scale: int = 1) -> Image.Image:
        """All images in one PIL grid, ``nrow`` per row (default: about square), ``scale`` x enlarged."""
        return make_grid(self.uint8(), nrow, padding, scale)

    # ---- rows and files ----------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per sample (text kinds: text, tokens, NFE, finish reason, extras)."""
        out = []
        for i in range(len(self)):
            row: dict[str, Any] = {"index": i}
            if self.prompt_index is not None:
                row["prompt_index"] = self.prompt_index[i]
            if self.text is not None:
                row["text"] = self.text[i]
            if self.tokens is not None:
                row["tokens"] = self.tokens[i]
            if self.labels is not None:
                row["label"] = int(self.labels[i])
            row.update(nfe=self.nfe[i], finish_reason=self.finish_reason[i])
            row.update({k: v[i] for k, v in self.info.items()})
            out.append(row)
        return out

    def save(self, path: str | Path, nrow: int | None = None, scale: int = 2) -> list[Path]:
        """Write the output atomically (never half-written).

        Images: a PNG grid at ``path`` (must end in ``.png``) and the settings beside it as
        ``.json``. Text: one JSON line per sample at ``path`` (``.jsonl``), settings included in
        each line. Returns the paths written.
        """
        path = Path(path)
        meta = {**self.settings, "kind": self.kind, "model": self.model, "seconds": round(self.seconds, 4)}
        targets = output_paths(path, self.images is not None)
        if self.images is not None:
            json_path = targets[1]
            buf = io.BytesIO()
            self.grid(nrow, scale=scale).save(buf, format="PNG")
            meta.update(nfe_per_image=max(self.nfe), grid=path.name, n=len(self))
            atomic_write_bytes(path, buf.getvalue())
            atomic_write_bytes(json_path, (json.dumps(meta, indent=2, default=str) + "\n").encode())
            return [path, json_path]
        lines = [json.dumps({**row, "settings": meta}, ensure_ascii=False, default=str) for row in self.rows()]
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
        return [path]


def output_paths(path: Path, images: bool) -> list[Path]:
    """The files :meth:`Generation.save` writes for ``path``, checked before anything is written (or sampled):
    images need a ``.png`` path and its ``.json`` beside it (both or neither: no grid without its settings);
    ``ValueError`` names what cannot be written (:func:`~decoding.io.check_writable`)."""
    if images and path.suffix.lower() != ".png":
        raise ValueError(f"images are saved as a PNG grid: give a path ending in .png, got {path}")
    paths = [path, path.with_suffix(".json")] if images else [path]
    check_writable(*paths)
    return paths


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1) -> Image.Image:
    """uint8 ``(N, C, H, W)`` -> a PIL grid with ``padding`` black pixels between tiles."""
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"make_grid needs uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("no images to put in a grid")
    if nrow is not None and (isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1):
        raise ValueError(f"nrow (images per grid row) must be a whole number >= 1, got {nrow!r}")
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.zeros(c, rows * (h + padding) + padding, nrow * (w + padding) + padding, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        canvas[:, y : y + h, x : x + w] = images[i]
    arr = canvas.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0] if c == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img
