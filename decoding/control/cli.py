"""Restoration flags of ``decoding generate`` (image models): ``--inpaint IMAGE --mask MASK``, ``--super-resolution``, ``--deblur``.

    decoding generate fashion-large --inpaint shirt.png --mask mask.png --out filled.png [--truth shirt_full.png]
    decoding generate fashion-large --super-resolution small7x7.png --factor 4 --restore dps --out sr.png
    decoding generate fashion-large --deblur blurred.png --blur-sigma 1.5 --n 4 --out deblurred.png

The observation becomes a condition (:mod:`decoding.control.operators`) of a steering wrapper
(``--restore steer`` = Steered Diffusion, ``dps``, ``replace``) added to ``guidance``; besides the
``--out`` grid, a report ``<out>_report.png`` shows observation | result | truth (truth with ``--truth``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from decoding.control.dps import DPS
from decoding.control.images import ImageSizeError, read_image, read_mask, save_report, shown_observation
from decoding.control.operators import Deblur, Inpaint, SuperResolution
from decoding.control.replace import Replace
from decoding.control.steer import Steer

METHODS = {"steer": Steer, "dps": DPS, "replace": Replace}
FLAGS = ("inpaint", "mask", "super_resolution", "deblur", "truth", "restore", "steer_scale", "obs_noise", "factor", "blur_sigma")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the restoration flags on ``decoding generate``."""
    g = p.add_argument_group("restoration with an unconditional image model (Steered Diffusion, arXiv 2310.00224)")
    g.add_argument("--inpaint", type=Path, metavar="IMAGE", help="fill in the unknown pixels of IMAGE (needs --mask)")
    g.add_argument("--mask", type=Path, metavar="MASK", help="PNG: white = known pixel, black = to fill in")
    g.add_argument("--super-resolution", type=Path, metavar="LOW", help="a low-resolution image (size / --factor)")
    g.add_argument("--factor", type=int, help="super-resolution factor: a whole number >= 2 that divides the "
                   "model's image size, e.g. 2, 4 or 7 for 28 pixels (default 4)")
    g.add_argument("--deblur", type=Path, metavar="IMAGE", help="a Gaussian-blurred image to sharpen")
    g.add_argument("--blur-sigma", type=float, help="the blur's sigma in pixels, > 0 and at most the image size (default 1.5)")
    g.add_argument("--restore", choices=sorted(METHODS), help="steer (default), dps or replace (the baselines); "
                   "the sampler defaults to ddpm here")
    g.add_argument("--steer-scale", type=float, help="step scale of steer, or DPS's zeta (default 1)")
    g.add_argument("--obs-noise", type=float, help="observation noise sigma_y (default 0.01)")
    g.add_argument("--truth", type=Path, metavar="IMAGE", help="the true image, shown in the report grid")


def given(args: argparse.Namespace) -> list[str]:
    """The restoration flags given on the command line."""
    return [f for f in FLAGS if getattr(args, f, None) is not None]


def guidance(args: argparse.Namespace, size: int) -> tuple[Any, Any]:
    """The steering object the flags describe and its condition (None, None when no task flag is given).

    Raises ValueError for incomplete or contradictory flags.
    """
    tasks = [f for f in ("inpaint", "super_resolution", "deblur") if getattr(args, f) is not None]
    if not tasks:
        extra = given(args)
        if extra:
            raise ValueError(f"--{extra[0].replace('_', '-')} needs a task: --inpaint, --super-resolution or --deblur")
        return None, None
    if len(tasks) > 1:
        raise ValueError("give one of --inpaint, --super-resolution, --deblur")
    if (args.mask is not None) != (tasks[0] == "inpaint"):
        raise ValueError("--inpaint and --mask go together")
    if args.factor is not None and tasks[0] != "super_resolution":
        raise ValueError("--factor belongs to --super-resolution")
    if args.blur_sigma is not None and tasks[0] != "deblur":
        raise ValueError("--blur-sigma belongs to --deblur")
    noise = 0.01 if args.obs_noise is None else args.obs_noise
    if tasks[0] == "inpaint":
        cond: Any = Inpaint(_read(args, "inpaint", size), _read(args, "mask", size, mask=True), noise)
    elif tasks[0] == "super_resolution":
        factor = 4 if args.factor is None else args.factor
        if not (factor >= 2 and size % factor == 0):
            fits = [str(f) for f in range(2, size + 1) if size % f == 0]
            raise ValueError(f"--factor {factor}: the factor must be a whole number >= 2 that divides the model's image size "
                             f"{size}, one of {', '.join(fits)} (default 4)")
        hint = f" (the model's {size} pixels / --factor {factor}); give a {size // factor}x{size // factor} image or change --factor"
        cond = SuperResolution(_read(args, "super_resolution", size // factor, hint), factor, noise)
    else:
        sigma = 1.5 if args.blur_sigma is None else args.blur_sigma
        if not (0 < sigma <= size):
            raise ValueError(f"--blur-sigma {sigma}: the blur's sigma must be > 0 and at most the image size {size} pixels (default 1.5)")
        cond = Deblur(_read(args, "deblur", size), sigma, noise)
    # read --truth now, not after sampling: a bad file fails before any output is written
    args.truth_image = _read(args, "truth", size) if args.truth is not None else None
    method = args.restore or "steer"
    if method == "replace":
        if args.steer_scale is not None:
            raise ValueError("--steer-scale does not apply to --restore replace")
        return Replace(cond, seed=args.seed if args.seed is not None else 0), cond
    scale = 1.0 if args.steer_scale is None else args.steer_scale
    if not 0 <= scale < float("inf"):
        raise ValueError(f"--steer-scale {scale}: give a finite number >= 0 (default 1; 0 turns steering off)")
    return METHODS[method](cond, scale=scale), cond


def write_report(args: argparse.Namespace, out: Any, cond: Any, png: Path) -> Path:
    """``<png stem>_report.png``: one row per image, observation | result [| truth].

    The truth image is the one :func:`guidance` read and checked before sampling (read here only when
    ``guidance`` did not run).
    """
    result = out.images
    columns = [shown_observation(cond, result), result]
    truth = getattr(args, "truth_image", None)
    if truth is None and args.truth is not None:
        truth = _read(args, "truth", result.shape[-1])
    if truth is not None:
        columns.append(truth.to(result.dtype).expand_as(result))
    return save_report(png.with_name(png.stem + "_report.png"), columns)


def _read(args: argparse.Namespace, flag: str, size: int, hint: str = "", mask: bool = False) -> Any:
    """The image of option ``--flag`` (``size`` x ``size``), its errors prefixed with the option's name."""
    name = "--" + flag.replace("_", "-")
    try:
        return (read_mask if mask else read_image)(getattr(args, flag), size)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{name}: {e}") from None
    except ImageSizeError as e:
        raise ValueError(f"{name}: {e}{hint}") from None
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
