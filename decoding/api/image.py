"""``load`` / ``generate`` for image diffusion models: a named solver, the model's own schedule, guidance wrappers.

Every image goes through :func:`decoding.decode` with the continuous process
(:class:`~decoding.processes.continuous.ContinuousProcess`). The starting noise of all ``n``
images is drawn first from one generator seeded with ``seed`` on the model's device: the same
seed on the same device gives the same images, and another ``batch_size`` the same starting
noise. Guidance methods are model wrappers, applied in the order given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from decoding.api.generation import Generation
from decoding.api.options import OptionError
from decoding.api.zoo import Source
from decoding.core.loop import decode
from decoding.core.protocols import Model
from decoding.core.types import State, new_generator
from decoding.models.image import ImageDiffusionModel, load_image_model
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.registry import SOLVERS, get_solver
from decoding.wrappers.cfg import CFG

#: Other names users type for the registry's solvers.
SOLVER_ALIASES = {"dpm_solver_pp": "dpmpp_2m", "dpm_solver_pp_2m": "dpmpp_2m", "dpm_solver_pp_3m": "dpmpp_3m", "unipc": "unipc_bh2"}
SPACINGS = ("logsnr", "time", "karras")


@dataclass
class ImageHandle:
    """A loaded image diffusion model: the engine model and its card."""

    model: ImageDiffusionModel
    name: str
    card: dict[str, Any]
    device: torch.device
    kind: str = field(default="image-diffusion", init=False)

    @property
    def classes(self) -> list[str]:
        return list(self.card.get("classes", []))


def load_image(source: Source, device: torch.device, dtype: torch.dtype | None) -> ImageHandle:
    return ImageHandle(load_image_model(source.path, device, dtype), source.name, source.card, device)


def solver_name(name: str) -> str:
    """The registry name of ``name`` (aliases such as ``dpm_solver_pp`` resolved)."""
    resolved = SOLVER_ALIASES.get(name, name)
    if resolved not in SOLVERS:
        raise OptionError(f"unknown solver {name!r}; choose one of: {', '.join(sorted(set(SOLVERS) | set(SOLVER_ALIASES)))}")
    return resolved


def parse_guidance(spec: Any) -> Any:
    """A guidance object from itself or its text form (``"cfg:3"``)."""
    if hasattr(spec, "wrap"):
        return spec
    if not isinstance(spec, str):
        raise OptionError(f"guidance entries are guidance objects (e.g. decoding.CFG(3.0)) or text like 'cfg:3', got {spec!r}")
    name, _, arg = spec.partition(":")
    if name == "cfg":
        try:
            return CFG(float(arg))
        except ValueError as e:
            raise OptionError(f"guidance {spec!r}: {e} (write cfg:SCALE, e.g. cfg:3)") from None
    raise OptionError(f"unknown guidance {spec!r}; known: cfg:SCALE")


def labels_for(class_label: int | Sequence[int] | Tensor | None, n: int, num_classes: int) -> Tensor:
    """``(n,)`` labels: one class for all, one per image, or the null class (``num_classes``) for None."""
    if class_label is None:
        return torch.full((n,), num_classes, dtype=torch.long)
    y = torch.as_tensor(class_label)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise OptionError(f"class_label must be an integer or integers, got {class_label!r}")
    y = y.long().reshape(-1)
    if y.numel() == 1:
        y = y.expand(n).clone()
    if y.numel() != n:
        raise OptionError(f"give one class label or n={n} of them, got {y.numel()}")
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        raise OptionError(
            f"class {int(y[bad][0])} is out of range: the model has classes 0..{num_classes - 1} "
            "(omit class_label for unconditional samples)"
        )
    return y


def generate_image(
    handle: ImageHandle,
    prompt: Any,
    *,
    n: int,
    seed: int | None,
    steps: int | None = None,
    class_label: int | Sequence[int] | Tensor | None = None,
    solver: str | None = None,
    spacing: str | None = None,
    guidance: Sequence[Any] | None = None,
    solver_options: dict[str, Any] | None = None,
    batch_size: int | None = None,
    on_step: Callable[[int, State], None] | None = None,
    progress: bool = False,
    sync_every: int | None = None,
) -> Generation:
    """See :func:`decoding.generate`."""
    if prompt is not None:
        raise OptionError(f"{handle.name} is an image diffusion model: it takes class_label=..., not a prompt")
    d = {"solver": "dpmpp_2m", "steps": 10, "spacing": "logsnr", **handle.card.get("defaults", {})}
    name = solver_name(str(d["solver"] if solver is None else solver))
    steps = int(d["steps"] if steps is None else steps)
    spacing = str(d["spacing"] if spacing is None else spacing)
    if steps < 1:
        raise OptionError(f"steps must be >= 1, got {steps}")
    if spacing not in SPACINGS:
        raise OptionError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    model = handle.model
    labels = labels_for(class_label, n, model.num_classes)
    specs = [parse_guidance(g) for g in (guidance or [])]
    if specs and class_label is None:
        raise OptionError("guidance needs class labels: give class_label (unconditional samples have nothing to guide towards)")
    wrapped: Model = model
    for g in specs:
        wrapped = g.wrap(wrapped, model.null_label)
    opts = dict(solver_options or {})
    if name == "dc_solver" and "cpr" in opts:  # ratios predicted for this number of steps
        opts.setdefault("steps", steps)
    process = ContinuousProcess(model.schedule, get_solver(name, **opts), spacing=spacing)
    dev = model.device
    cfg = model.net.cfg
    generator = new_generator(seed, dev)
    noise = torch.randn((n, cfg.in_channels, cfg.image_size, cfg.image_size), generator=generator, device=dev)
    bs = n if batch_size is None else int(batch_size)
    if bs < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    chunks, nfe, seconds = [], [], 0.0
    for lo in range(0, n, bs):
        res = decode(
            wrapped, process, noise[lo : lo + bs], steps=steps, generator=generator, cond=labels[lo : lo + bs].to(dev),
            progress=progress, callback=None if on_step is None else (lambda i, state, pred: on_step(i, state)),
            sync_every=sync_every,
        )
        chunks.append(res.x.float().cpu())
        nfe += res.nfe.tolist()
        seconds += res.seconds
    settings = {
        "n": n, "seed": seed, "class_label": None if class_label is None else labels.tolist(),
        "solver": name, "steps": steps, "spacing": spacing, "guidance": [g.spec() for g in specs],
        "solver_options": {k: v for k, v in (solver_options or {}).items() if isinstance(v, int | float | str | bool)},
        "batch_size": bs, "device": str(dev), "dtype": str(model.dtype).removeprefix("torch."),
        "schedule": model.schedule.key, "torch": torch.__version__,
    }
    return Generation(
        kind=handle.kind, model=handle.name, images=torch.cat(chunks).clamp(-1, 1), labels=labels, nfe=nfe,
        finish_reason=["complete"] * n, seconds=seconds, settings=settings,
    )
