"""``load`` / ``generate`` for guidance-distilled students (kind ``distilled-diffusion``; Meng et al., arXiv 2210.03142).

A student's card (``config.json``) holds ``"distill": {"stage", "steps", "w_range", ...}``:

- a **stage-1** student (``steps: null``) is a w-conditioned replacement of the CFG teacher: one
  call per step, any solver (``solver``, ``spacing``, any ``steps``), like an image diffusion model;
- an **N-step** student (stage 2) samples with exactly its ``N`` steps on its own time grid
  (``"time"`` spacing), with ``sampler="deterministic"`` (DDIM; ``N = 1`` is one step of the decode
  loop: ``x = x0(z_T)``) or ``sampler="stochastic"`` (:class:`~decoding.distill.sampler.StochasticStepSampler`).

``guidance`` takes the engine's CFG form (``"cfg:1.5"`` or ``decoding.CFG(1.5)``, scale ``s``): the
student is conditioned on Meng et al.'s ``w = s - 1``, which must lie in the trained range. The
starting noise is drawn as for image models (one generator seeded with ``seed``), so a student and
its teacher sample from the same noise with the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from decoding.adapters.hf import parse_dtype
from decoding.api.generation import Generation
from decoding.api.image import SPACINGS, labels_for, parse_guidance, solver_name
from decoding.api.options import OptionError
from decoding.api.run import Run
from decoding.api.zoo import Handle, Source
from decoding.core.loop import decode
from decoding.core.types import new_generator
from decoding.distill.sampler import StochasticStepSampler
from decoding.distill.student import GuidedStudentModel
from decoding.distill.targets import cfg_scale, meng_weight
from decoding.models.image import load_unet, schedule_from_config
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.ddim import DDIM
from decoding.solvers.registry import get_solver
from decoding.wrappers.guidance import CFG

SAMPLERS = ("deterministic", "stochastic")


@dataclass
class DistilledHandle(Handle):
    """A loaded student: the engine model (:class:`~decoding.distill.student.GuidedStudentModel`) and its card."""

    model: GuidedStudentModel
    kind: str = field(default="distilled-diffusion", init=False)

    @property
    def steps(self) -> int | None:
        """The student's own number of steps (None: a stage-1 student, any number)."""
        steps = self.card["distill"].get("steps")
        return None if steps is None else int(steps)

    @property
    def w_range(self) -> tuple[float, float]:
        lo, hi = self.card["distill"]["w_range"]
        return float(lo), float(hi)


def load_distilled(source: Source, device: torch.device, dtype: torch.dtype | None) -> DistilledHandle:
    """The student of a ``distilled-diffusion`` folder (bfloat16 on CUDA, float32 elsewhere unless ``dtype``)."""
    if "distill" not in source.card or "w_range" not in source.card["distill"]:
        raise ValueError(f"{source.path}/config.json declares kind distilled-diffusion but has no 'distill' entry with 'w_range'")
    net, config = load_unet(source.path, device)
    dtype = parse_dtype(dtype, device)  # None: bfloat16 on CUDA, float32 elsewhere
    net = net.to(dtype)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    model = GuidedStudentModel(net, schedule_from_config(config["schedule"]), prediction=config["prediction"])
    return DistilledHandle(model, source.name, source.card, device)


def guidance_weight(handle: DistilledHandle, guidance: Sequence[Any] | None) -> tuple[float, str]:
    """``(w, spec)``: Meng et al.'s weight of the one CFG entry of ``guidance`` (or the card's default), range-checked."""
    specs = [parse_guidance(g) for g in (guidance if guidance is not None else [handle.card["defaults"].get("guidance", "cfg:1")])]
    if len(specs) != 1 or not isinstance(specs[0], CFG) or specs[0].rescale or specs[0].interval is not None:
        raise OptionError(f"{handle.name} is a guidance-distilled student: its guidance is one plain CFG scale "
                          "(e.g. guidance=['cfg:1.5']); rescale, intervals, CFG++, PAG and T-Stitch do not apply")
    w = meng_weight(specs[0].scale)
    lo, hi = handle.w_range
    if not lo - 1e-9 <= w <= hi + 1e-9:
        raise OptionError(f"{handle.name} was trained for CFG scales {cfg_scale(lo):g} to {cfg_scale(hi):g} "
                          f"(Meng et al.'s w in [{lo:g}, {hi:g}]); got {specs[0].spec()}")
    return w, specs[0].spec()


def student_process(handle: DistilledHandle, steps: int | None, sampler: str | None, solver: str | None,
                    spacing: str | None) -> tuple[ContinuousProcess, int, dict[str, Any]]:
    """The process of one call, its number of steps and the settings that describe it."""
    d = handle.card.get("defaults", {})
    own = handle.steps
    if own is None:
        if sampler is not None:
            raise OptionError(f"{handle.name} is a stage-1 student: choose a solver (solver=...), not a sampler; "
                              "the deterministic / stochastic samplers belong to the N-step students")
        name = solver_name(str(solver if solver is not None else d.get("solver", "dpmpp_2m")))
        spacing = str(spacing if spacing is not None else d.get("spacing", "logsnr"))
        if spacing not in SPACINGS:
            raise OptionError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        steps = int(steps if steps is not None else d.get("steps", 20))
        if steps < 1:
            raise OptionError(f"steps must be >= 1, got {steps}")
        try:
            built = get_solver(name)
        except (ValueError, FileNotFoundError) as e:  # e.g. DPM-Solver-v3's statistics: options a student does not take
            raise OptionError(f"{handle.name} is a distilled student and takes no solver options, which solver {name!r} "
                              f"needs ({e}); choose a solver without them, e.g. dpmpp_2m, ddim or unipc") from None
        return ContinuousProcess(handle.model.schedule, built, spacing=spacing), steps, {"solver": name, "spacing": spacing}
    if solver is not None or spacing is not None:
        raise OptionError(f"{handle.name} is a {own}-step distilled student: it samples on its own time grid with "
                          "sampler='deterministic' (DDIM) or 'stochastic'; solver and spacing do not apply")
    if steps is not None and steps != own:
        raise OptionError(f"{handle.name} is a {own}-step distilled student: it samples with steps={own} only, got steps={steps} "
                          "(use the student distilled for that number of steps, or its teacher)")
    sampler = str(sampler if sampler is not None else d.get("sampler", "deterministic"))
    if sampler not in SAMPLERS:
        raise OptionError(f"unknown sampler {sampler!r} for a distilled student; choose one of {', '.join(SAMPLERS)}")
    solver_obj = DDIM() if sampler == "deterministic" else StochasticStepSampler()
    spacing = handle.card["distill"].get("spacing", "time")
    return ContinuousProcess(handle.model.schedule, solver_obj, spacing=spacing), own, {"sampler": sampler, "spacing": spacing}


def generate_distilled(
    handle: DistilledHandle,
    prompt: Any,
    run: Run,
    *,
    steps: int | None = None,
    class_label: int | Sequence[int] | Tensor | None = None,
    guidance: Sequence[Any] | None = None,
    sampler: str | None = None,
    solver: str | None = None,
    spacing: str | None = None,
) -> Generation:
    """See :func:`decoding.generate` and the module docstring."""
    if prompt is not None:
        raise OptionError(f"{handle.name} is an image model: it takes class_label=..., not a prompt")
    if class_label is None:
        raise OptionError(f"{handle.name} is a guidance-distilled student: it samples class-conditionally; give class_label")
    model, n = handle.model, run.n
    labels = labels_for(class_label, n, model.num_classes)
    w, spec = guidance_weight(handle, guidance)
    process, steps, described = student_process(handle, steps, sampler, solver, spacing)
    dev, cfg = model.device, model.net.cfg
    generator = new_generator(run.seed, dev)
    noise = torch.randn((n, cfg.in_channels, cfg.image_size, cfg.image_size), generator=generator, device=dev)
    chunks, nfe, seconds = [], [], 0.0
    for lo, b in run.chunks():
        cond = {"class": labels[lo : lo + b].to(dev), "w": w}
        res = decode(model, process, noise[lo : lo + b], steps=steps, generator=generator, cond=cond,
                     **run.decode_options())
        chunks.append(res.x.float().cpu())
        nfe += res.nfe.tolist()
        seconds += res.seconds
    settings = {
        "n": n, "seed": run.seed, "class_label": labels.tolist(), "steps": steps, **described, "guidance": [spec], "w": w,
        "batch_size": run.batch_size, "device": str(dev), "dtype": str(model.dtype).removeprefix("torch."), "schedule": model.schedule.key,
        "torch": torch.__version__,
    }
    return Generation(kind=handle.kind, model=handle.name, images=torch.cat(chunks).clamp(-1, 1), labels=labels, nfe=nfe,
                      finish_reason=["complete"] * n, seconds=seconds, settings=settings)
