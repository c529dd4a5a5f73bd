"""Image files for restoration: read observations and masks (PNG), write report grids (observation | result | truth)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from decoding.api.generation import make_grid
from decoding.control.operators import Deblur, Inpaint, SuperResolution
from decoding.io import atomic_write_bytes


class ImageSizeError(ValueError):
    """An image file of the wrong size (:func:`read_image` with ``size``)."""


def read_image(path: str | Path, size: int | None = None) -> Tensor:
    """A gray image file as ``(1, 1, H, W)`` float in [-1, 1]; ``size`` checks its side (no resizing).

    Raises FileNotFoundError for a missing file and ValueError for anything else that is not a
    readable image of the right size (a directory, a text file, a truncated PNG, ...); the size is
    checked from the header, before the pixels are decoded.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not an image file; give a PNG file")
    if not p.exists():
        raise FileNotFoundError(f"image {p} does not exist; check the path")
    if not p.is_file():
        raise ValueError(f"{p} is not a regular file; give a PNG file")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if size is not None and (w, h) != (size, size):
                raise ImageSizeError(f"{p} is {w}x{h} pixels; this needs {size}x{size}")
            arr = torch.tensor(list(im.convert("L").getdata()), dtype=torch.float32).view(h, w)
    except ImageSizeError:
        raise
    except (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError) as e:
        # PIL.UnidentifiedImageError (not an image), truncated or corrupt data, no permission to read
        raise ValueError(f"{p} could not be read as an image ({e}); give a PNG file") from None
    return (arr / 127.5 - 1.0)[None, None]


def read_mask(path: str | Path, size: int | None = None) -> Tensor:
    """A mask file as ``(1, 1, H, W)`` in {0, 1}: white (> 127) = known pixel, black = to fill in."""
    return (read_image(path, size) > 0).float()


def write_image(path: str | Path, x: Tensor) -> Path:
    """Save one ``(1, H, W)`` / ``(1, 1, H, W)`` image in [-1, 1] as a gray PNG (atomically)."""
    x = x.reshape(x.shape[-2], x.shape[-1])
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def shown_observation(condition: object, like: Tensor) -> Tensor:
    """What a condition observed, drawn at the result's size ``like`` ``(B, C, H, W)``.

    Inpainting: the known pixels, unknown ones mid-gray; super-resolution: the low-resolution image
    enlarged (nearest); deblurring: the blurred image.
    """
    if isinstance(condition, Inpaint):
        m = condition.mask.to(like.dtype)
        return (m * condition.y.to(like.dtype)).expand_as(like) + (1 - m).expand_as(like) * 0.0
    if isinstance(condition, SuperResolution):
        return F.interpolate(condition.y.to(like.dtype), scale_factor=condition.factor, mode="nearest").expand_as(like)
    if isinstance(condition, Deblur):
        return condition.y.to(like.dtype).expand_as(like)
    raise ValueError(f"{type(condition).__name__} has no image observation to show")


def report_grid(columns: Sequence[Tensor], scale: int = 4) -> Image.Image:
    """One row per image, one column per tensor (e.g. observation | result | truth), each ``(B, C, H, W)`` in [-1, 1]."""
    if not columns:
        raise ValueError("no columns to draw")
    b = columns[0].shape[0]
    if any(c.shape != columns[0].shape for c in columns):
        raise ValueError(f"columns differ in shape: {[tuple(c.shape) for c in columns]}")
    stacked = torch.stack([c.float().cpu() for c in columns], 1).reshape(b * len(columns), *columns[0].shape[1:])
    u8 = ((stacked.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return make_grid(u8, nrow=len(columns), scale=scale)


def save_report(path: str | Path, columns: Sequence[Tensor], scale: int = 4) -> Path:
    """Write :func:`report_grid` as a PNG (atomically)."""
    buf = io.BytesIO()
    report_grid(columns, scale).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
