"""Images in one call: ``sample_images(model, n, class_label, solver, steps, ...) -> ImageSamples``.

>>> from decoding.image_api import sample_images
>>> out = sample_images("fashion-large", n=16, class_label=7, solver="dpmpp_2m", steps=10, seed=0)
>>> out.images.shape          # (16, 1, 28, 28) float in [-1, 1]
>>> out.grid().save("grid.png")

Every image goes through the one decode loop (:func:`decoding.decode`) with the continuous
process (:class:`~decoding.processes.continuous.ContinuousProcess`), a named solver
(:mod:`decoding.solvers.registry`) and the model's own noise schedule. The starting noise of all
``n`` images is drawn first from one generator seeded with ``seed`` on ``device``: the same seed
on the same device gives the same images, and another ``batch_size`` the same starting noise
(deterministic solvers then agree up to floating-point rounding of the batched kernels).
:func:`write_samples` writes the PNG grid and a JSON of the settings atomically.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from decoding.core.loop import decode
from decoding.core.types import new_generator
from decoding.models.image import ImageDiffusionModel, atomic_write_bytes, load_image_model
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.registry import SOLVERS, get_solver

#: Other names users type for the registry's solvers.
SOLVER_ALIASES = {"dpm_solver_pp": "dpmpp_2m", "dpm_solver_pp_2m": "dpmpp_2m", "dpm_solver_pp_3m": "dpmpp_3m", "unipc": "unipc_bh2"}


def solver_name(name: str) -> str:
    """The registry name of ``name`` (aliases such as ``dpm_solver_pp`` resolved); ValueError if unknown."""
    resolved = SOLVER_ALIASES.get(name, name)
    if resolved not in SOLVERS:
        known = sorted(set(SOLVERS) | set(SOLVER_ALIASES))
        raise ValueError(f"unknown solver {name!r}; choose one of: {', '.join(known)}")
    return resolved


@dataclass
class ImageSamples:
    """Generated images and how they were made.

    Attributes:
        images: ``(N, C, H, W)`` float32 in [-1, 1], on the CPU.
        labels: ``(N,)`` long: the class of each image (``num_classes`` = unconditional).
        nfe: network evaluations per image (guidance counts 2 per step).
        seconds: wall time of sampling.
        settings: everything needed to reproduce them (model, solver, steps, seed, device...).
    """

    images: Tensor
    labels: Tensor
    nfe: float
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def uint8(self) -> Tensor:
        """``(N, C, H, W)`` uint8 in [0, 255]."""
        return ((self.images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def pil_images(self) -> list[Image.Image]:
        """One PIL image per sample (mode ``L`` for gray, ``RGB`` for 3 channels)."""
        arr = self.uint8().permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]

    def grid(self, nrow: int | None = None, padding: int = 2, scale: int = 1) -> Image.Image:
        """All images in one PIL grid, ``nrow`` per row (default: about square), ``scale`` x enlarged."""
        return make_grid(self.uint8(), nrow, padding, scale)


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1) -> Image.Image:
    """uint8 ``(N, C, H, W)`` -> a PIL grid with ``padding`` black pixels between tiles."""
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"make_grid needs uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("no images to put in a grid")
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


def _labels(class_label: int | Sequence[int] | Tensor | None, n: int, num_classes: int) -> Tensor:
    if class_label is None:
        return torch.full((n,), num_classes, dtype=torch.long)
    y = torch.as_tensor(class_label)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"class_label must be an integer or integers, got {class_label!r}")
    y = y.long().reshape(-1)
    if y.numel() == 1:
        y = y.expand(n).clone()
    if y.numel() != n:
        raise ValueError(f"give one class label or n={n} of them, got {y.numel()}")
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"class {int(y[bad][0])} is out of range: the model has classes 0..{num_classes - 1} "
            "(omit the class for unconditional samples)"
        )
    return y


def sample_images(
    model: ImageDiffusionModel | str | Path,
    n: int,
    class_label: int | Sequence[int] | Tensor | None = None,
    solver: str = "dpmpp_2m",
    steps: int = 10,
    guidance: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    spacing: str = "logsnr",
    batch_size: int | None = None,
    progress: bool = False,
    **solver_options: Any,
) -> ImageSamples:
    """Sample ``n`` images.

    Args:
        model: an :class:`ImageDiffusionModel`, a checkpoint folder, or a zoo name (``"fashion-large"``).
        n: number of images.
        class_label: one class for all, one per image, or None (unconditional: the null class).
        solver: a solver name (:data:`decoding.solvers.registry.SOLVERS`, or an alias such as
            ``dpm_solver_pp``).
        steps: solver steps (= network calls per image without guidance).
        guidance: classifier-free guidance scale (1 = none; otherwise 2 calls per step, batched).
        seed: seed of the generator on ``device`` (noise and stochastic solvers).
        device: where to sample (the model is moved there when loaded by name).
        spacing: time grid: ``"logsnr"``, ``"time"`` or ``"karras"``.
        batch_size: images per decode call (default: all ``n`` at once).
        solver_options: passed to the solver's constructor.

    Returns:
        :class:`ImageSamples` with images on the CPU and a settings dict.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = torch.device(device)
    name = solver_name(solver)
    model_name = str(model) if isinstance(model, str | Path) else type(model).__name__
    if isinstance(model, str | Path):
        model = load_image_model(model, device)
    if guidance != model.guidance:
        model = copy.copy(model)
        model.guidance = float(guidance)
    labels = _labels(class_label, n, model.num_classes)
    cfg = model.net.cfg
    shape = (n, cfg.in_channels, cfg.image_size, cfg.image_size)
    generator = new_generator(seed, device)
    noise = torch.randn(shape, generator=generator, device=device)
    process = ContinuousProcess(model.schedule, get_solver(name, **solver_options), spacing=spacing)
    bs = batch_size or n
    chunks, nfe = [], []
    start = time.perf_counter()
    for i in range(0, n, bs):
        result = decode(
            model, process, noise[i : i + bs], steps=steps, generator=generator,
            cond=labels[i : i + bs].to(device), progress=progress,
        )
        chunks.append(result.x.float().cpu())
        nfe.append(result.nfe)
    seconds = time.perf_counter() - start
    settings = {
        "model": model_name,
        "n": n,
        "class_label": None if class_label is None else labels.tolist() if labels.unique().numel() > 1 else int(labels[0]),
        "solver": name,
        "steps": steps,
        "spacing": spacing,
        "guidance": float(guidance),
        "seed": seed,
        "device": str(device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "schedule": model.schedule.key,
        "solver_options": {k: v for k, v in solver_options.items() if isinstance(v, int | float | str | bool)},
        "torch": torch.__version__,
    }
    return ImageSamples(torch.cat(chunks).clamp(-1, 1), labels, float(torch.cat(nfe).max()), seconds, settings)


def write_samples(samples: ImageSamples, out: str | Path, nrow: int | None = None, scale: int = 2) -> tuple[Path, Path]:
    """Write the PNG grid to ``out`` and the settings to ``out`` with suffix ``.json``, atomically.

    Returns:
        ``(png_path, json_path)``.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"the grid is written as PNG: give a path ending in .png, got {out}")
    buf = io.BytesIO()
    samples.grid(nrow, scale=scale).save(buf, format="PNG")
    meta = {**samples.settings, "nfe_per_image": samples.nfe, "seconds": round(samples.seconds, 3), "grid": out.name}
    json_path = out.with_suffix(".json")
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_bytes(json_path, (json.dumps(meta, indent=2) + "\n").encode())
    return out, json_path


# ---- command line: `decoding image ...` (registered by decoding/cli/image.py) -------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``decoding image`` on the CLI's subparsers (sets ``func``)."""
    p = subparsers.add_parser(
        "image",
        help="sample images from a diffusion model",
        description="Sample a PNG grid of images (and a JSON of the settings) through the decoding loop.",
    )
    p.add_argument("--model", default="fashion-large", help="zoo name (fashion-large, fashion-small) or a checkpoint folder")
    p.add_argument("--class", dest="class_label", type=int, default=None, help="class index (default: unconditional)")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--solver", default="dpmpp_2m", help=f"one of {', '.join(sorted(set(SOLVERS) | set(SOLVER_ALIASES)))}")
    p.add_argument("--steps", type=int, default=10, help="solver steps (default 10)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (default 1 = none)")
    p.add_argument("--spacing", default="logsnr", choices=["logsnr", "time", "karras"])
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: square)")
    p.add_argument("--out", default="grid.png", help="PNG grid path; the settings go next to it as .json")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same device -> same images")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda (default cpu)")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    samples = sample_images(
        args.model, args.n, args.class_label, args.solver, args.steps, args.guidance, args.seed, args.device,
        spacing=args.spacing, batch_size=args.batch_size, progress=True,
    )
    png, js = write_samples(samples, args.out, nrow=args.nrow)
    print(f"wrote {png} and {js}: {args.n} images, {samples.nfe:g} NFE each, {samples.seconds:.2f} s")
    return 0
