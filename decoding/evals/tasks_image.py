"""Image tasks: the image models and decoders an eval suite can name, and their jobs.

Kinds:

- ``classify``: the diffusion classifier (Li et al., arXiv 2303.16203) on Fashion-MNIST test
  images; sample ``i`` is test image ``i``.
- ``image``: sampling images with a continuous-diffusion solver (decoder ``solver``); sample
  ``i`` starts from its own noise and (class-conditional) class ``i mod K``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.evals.base import Batch, take_args
from decoding.evals.diffusion_classifier import denoising_errors, predictions_by_n
from decoding.evals.suite import TaskSpec
from decoding.solvers.timesteps import default_spacing


@dataclass
class ImageModel:
    """An image diffusion model with its device and a name for reports."""

    name: str
    model: Any  # ImageDiffusionModel or ClassGaussianModel: state -> Prediction(eps, x0)
    device: torch.device
    num_classes: int
    shape: tuple[int, int, int] = (1, 28, 28)
    info: dict[str, Any] = field(default_factory=dict)


def class_gaussian_model(args: dict[str, Any], device: torch.device) -> ImageModel:
    """Exact per-class diagonal Gaussians fitted to Fashion-MNIST (:mod:`decoding.evals.closed_form`)."""
    from decoding.evals.closed_form import fashion_class_gaussians

    a = take_args("model class-gaussian", args, {"min_var": 1e-4})
    m = fashion_class_gaussians(float(a["min_var"])).to(device)
    return ImageModel("class-gaussian", m, device, m.num_classes)


def unet_model(args: dict[str, Any], device: torch.device) -> ImageModel:
    """A trained UNet checkpoint (:func:`decoding.models.image.load_image_model`).

    Args: ``checkpoint`` (a folder or a zoo name such as ``"fashion-small"``), ``dtype``
    (``"float32"`` or ``"bfloat16"``; default bfloat16 on CUDA, float32 on the CPU).
    """
    from decoding.models.image import load_image_model

    a = take_args("model unet", args, {"checkpoint": None, "dtype": None})
    if not a["checkpoint"]:
        raise ValueError("model unet needs model_args.checkpoint (a folder, or a name in models/)")
    dtype = None if a["dtype"] is None else getattr(torch, str(a["dtype"]))
    m = load_image_model(a["checkpoint"], device, dtype=dtype)
    return ImageModel(f"unet:{a['checkpoint']}", m, device, m.num_classes, info={"unet": True, "checkpoint": str(a["checkpoint"])})


@lru_cache(maxsize=2)
def _fashion(split: str) -> tuple[Tensor, Tensor]:
    from decoding.data.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist(split)


# --------------------------------------------------------------------------- diffusion classifier


@dataclass(frozen=True)
class DiffusionClassifierSettings:
    n_samples: int
    ns: tuple[int, ...]
    t_min: float
    t_max: float
    max_rows: int


def diffusion_classifier_decoder(
    settings: dict[str, Any], spec: TaskSpec | None = None, suite_dir: Path | None = None
) -> DiffusionClassifierSettings:
    """Settings: ``n_samples`` (noise draws per image), ``ns`` (the prefixes to report; default
    1, 2, 5, 10, ... up to ``n_samples``), ``t_min``/``t_max``, ``max_rows`` (model batch)."""
    s = take_args(
        "decoder diffusion_classifier",
        settings,
        {"n_samples": None, "ns": None, "t_min": 0.0, "t_max": 1.0, "max_rows": 2048},
    )
    n = s["n_samples"]
    if not isinstance(n, int) or n < 1:
        raise ValueError(
            f"decoder diffusion_classifier: settings.n_samples must be an integer >= 1, got {n!r}"
        )
    ns = s["ns"] or [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if k < n] + [n]
    if any(not isinstance(k, int) or not 1 <= k <= n for k in ns):
        raise ValueError(
            f"decoder diffusion_classifier: every ns entry must be an integer in 1..n_samples ({n}), got {ns}"
        )
    if not 0.0 <= float(s["t_min"]) < float(s["t_max"]) <= 1.0:
        raise ValueError(
            f"decoder diffusion_classifier: need 0 <= t_min < t_max <= 1, got {s['t_min']}, {s['t_max']}"
        )
    return DiffusionClassifierSettings(
        n, tuple(sorted(set(ns))), float(s["t_min"]), float(s["t_max"]), int(s["max_rows"])
    )


@dataclass
class ClassifyJob:
    """Classifies test images ``indices`` with the diffusion classifier."""

    im: ImageModel
    settings: DiffusionClassifierSettings
    split: str = "test"
    kind: str = "classify"

    def __post_init__(self) -> None:
        self.device = self.im.device

    def run(self, indices: Sequence[int], generator: torch.Generator) -> Batch:
        x, y = _fashion(self.split)
        if max(indices) >= x.shape[0]:
            raise ValueError(f"sample index {max(indices)} exceeds the {x.shape[0]} {self.split} images")
        images = (x[list(indices)].float()[:, None] / 127.5 - 1.0).to(self.device)
        s = self.settings
        start = time.perf_counter()
        errors = denoising_errors(
            self.im.model, images, s.n_samples, generator, t_range=(s.t_min, s.t_max), max_rows=s.max_rows
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        preds = predictions_by_n(errors, s.ns)
        k = errors.shape[-1]
        outputs = [
            {"label": int(y[i]), "pred": {str(n): preds[n][j] for n in s.ns}} for j, i in enumerate(indices)
        ]
        return Batch(
            outputs=outputs,
            nfe=[float(s.n_samples * k)] * len(indices),
            seconds=seconds,
            data={"errors": errors},
        )


def _make_classify(
    spec: TaskSpec, im: ImageModel, dec: DiffusionClassifierSettings, suite_dir: Path | None
) -> ClassifyJob:
    d = take_args(f"task {spec.name}: data", dict(spec.data), {"dataset": "fashion_mnist", "split": "test"})
    if d["dataset"] != "fashion_mnist":
        raise ValueError(
            f"the diffusion classifier runs on data.dataset = 'fashion_mnist', got {d['dataset']!r}"
        )
    if d["split"] not in ("train", "test"):
        raise ValueError(f"data.split must be 'train' or 'test', got {d['split']!r}")
    n = 60000 if d["split"] == "train" else 10000
    if spec.samples > n:
        raise ValueError(f"samples = {spec.samples} exceeds the {n} Fashion-MNIST {d['split']} images")
    return ClassifyJob(im, dec, d["split"])


# ----------------------------------------------------------------------------------- image sampling


@dataclass(frozen=True)
class SolverSettings:
    solver: str
    steps: int
    spacing: str | None
    classes: str | int | None
    guidance: float
    options: dict[str, Any]


def solver_decoder(
    settings: dict[str, Any], spec: TaskSpec | None = None, suite_dir: Path | None = None
) -> SolverSettings:
    """Sampling with a continuous-diffusion solver of :mod:`decoding.solvers.registry`.

    Settings: ``solver`` (name), ``steps``, ``spacing`` (a name of
    :data:`decoding.solvers.timesteps.SPACINGS`; default: the solver's own measured grid, as in
    ``decoding.generate``), ``classes`` (``"all"``: sample ``i`` gets class ``i mod K``; an
    integer: that class; ``"none"``: unconditional), ``guidance`` (classifier-free guidance scale,
    UNet models only), ``options`` (a table passed to the solver's constructor; DPM-Solver-v3's
    statistics and DC-Solver's ratios come from the UNet checkpoint's folder when not given).
    """
    from decoding.api.image import MODEL_FILES, solver_name
    from decoding.solvers.base import check_steps
    from decoding.solvers.registry import get_solver
    from decoding.solvers.timesteps import SPACINGS

    s = take_args(
        "decoder solver",
        settings,
        {
            "solver": "dpmpp_2m",
            "steps": None,
            "spacing": None,
            "classes": "all",
            "guidance": 1.0,
            "options": {},
        },
    )
    if not isinstance(s["steps"], int) or s["steps"] < 1:
        raise ValueError(f"decoder solver: settings.steps must be an integer >= 1, got {s['steps']!r}")
    if s["spacing"] is not None and s["spacing"] not in SPACINGS:
        raise ValueError(f"decoder solver: spacing must be one of {', '.join(SPACINGS)}, got {s['spacing']!r}")
    classes = s["classes"]
    if not (classes in ("all", "none") or isinstance(classes, int) and not isinstance(classes, bool)):
        raise ValueError(f"decoder solver: classes must be 'all', 'none' or a class number, got {classes!r}")
    name = solver_name(str(s["solver"]))
    if name not in MODEL_FILES:  # unknown options and too few steps fail now (the others need the model's files first)
        check_steps(get_solver(name, **dict(s["options"])), s["steps"], name)
    return SolverSettings(name, s["steps"], s["spacing"], classes, float(s["guidance"]), dict(s["options"]))


class WithCond:
    """A model wrapper that puts fixed class labels into ``state.memory["cond"]`` (for reference solves)."""

    def __init__(self, model: Any, cond: Tensor | None) -> None:
        self.model, self.cond = model, cond

    def __call__(self, state: Any) -> Any:
        from dataclasses import replace

        return self.model(
            state if self.cond is None else replace(state, memory={**state.memory, "cond": self.cond})
        )


@dataclass
class ImageJob:
    """Samples images with a solver: sample ``i`` starts from its own noise (and class ``i mod K``)."""

    im: ImageModel
    settings: SolverSettings
    kind: str = "image"

    def __post_init__(self) -> None:
        from decoding.wrappers.guidance import CFG, GuidedModel

        self.device = self.im.device
        self.model = self.im.model
        if self.settings.guidance != 1.0:
            if not self.im.info.get("unet"):
                raise ValueError("settings.guidance applies to UNet models (classifier-free guidance) only")
            self.model = GuidedModel(self.model, self.model.null_label, cfg=CFG(self.settings.guidance))
        c = self.settings.classes
        if isinstance(c, int) and not 0 <= c < self.im.num_classes:
            raise ValueError(
                f"settings.classes = {c} is outside the model's classes 0..{self.im.num_classes - 1}"
            )
        if c == "none" and not self.im.info.get("unet"):
            raise ValueError(
                f"model {self.im.name} is class-conditional only: use classes = 'all' or a class number"
            )
        self.conditional = c != "none"
        self.schedule = self.im.model.schedule
        self.solver = self._solver()
        self.spacing = self.settings.spacing or default_spacing(self.solver)

    def _solver(self) -> Any:
        """The solver with its options; v3's statistics / DC's ratios from the checkpoint's folder if not given."""
        from decoding.api.image import MODEL_FILES, model_statistics
        from decoding.solvers.registry import get_solver

        s, opts = self.settings, dict(self.settings.options)
        checkpoint = self.im.info.get("checkpoint")
        if checkpoint is not None:
            opts = model_statistics(checkpoint, s.solver, opts)
        elif s.solver in MODEL_FILES and not {MODEL_FILES[s.solver][0], "cpr"} & set(opts):
            raise ValueError(f"{s.solver} needs statistics of a trained checkpoint: give them in settings.options")
        return get_solver(s.solver, **opts)

    def labels(self, indices: Sequence[int]) -> Tensor | None:
        c = self.settings.classes
        if c == "none":
            return None
        if c == "all":
            return torch.tensor([i % self.im.num_classes for i in indices], device=self.device)
        return torch.full((len(indices),), int(c), device=self.device)

    def run(self, indices: Sequence[int], generator: torch.Generator) -> Batch:
        from decoding.core.loop import decode
        from decoding.evals.fid import to_uint8
        from decoding.processes.continuous import ContinuousProcess

        s = self.settings
        labels = self.labels(indices)
        noise = torch.randn((len(indices), *self.im.shape), generator=generator, device=self.device)
        process = ContinuousProcess(self.schedule, self.solver, spacing=self.spacing)
        start = time.perf_counter()
        res = decode(self.model, process, noise, steps=s.steps, generator=generator, cond=labels)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        final = res.x.float()
        outputs = [
            {"class": None if labels is None else int(y)}
            for y in (labels.tolist() if labels is not None else [None] * len(indices))
        ]
        return Batch(
            outputs=outputs,
            nfe=res.nfe.tolist(),
            seconds=seconds,
            tensors={"images": to_uint8(final).cpu()},
            data={"noise": noise, "final": final, "labels": labels},
        )


CLASSIFY_MODELS: dict[str, Callable[[dict[str, Any], torch.device], ImageModel]] = {
    "class-gaussian": class_gaussian_model,
    "unet": unet_model,
}
CLASSIFY_DECODERS: dict[str, Callable[..., Any]] = {"diffusion_classifier": diffusion_classifier_decoder}

MODELS: dict[str, Callable[[dict[str, Any], torch.device], ImageModel]] = dict(CLASSIFY_MODELS)
DECODERS: dict[str, Callable[..., Any]] = {"solver": solver_decoder}


def make_job(spec: TaskSpec, im: ImageModel, decoder: Any, suite_dir: Path | None) -> ClassifyJob | ImageJob:
    if spec.kind == "classify":
        return _make_classify(spec, im, decoder, suite_dir)
    if spec.data:
        raise ValueError(f"image sampling tasks take no data table, got {sorted(spec.data)}")
    return ImageJob(im, decoder)
