"""The trainable models of the zoo: ``decoding train MODEL`` looks the name up here.

A recipe is a task class, its config preset and the skeleton's option preset. Presets are the
starting point; every field can be changed on the command line (``decoding train MODEL --help``).
Why the image presets differ from the first shipped run (``models/fashion-*/config.json``:
``ema_decay 0.9995``, 1,011 steps): the EMA is EDM2's power EMA (``ema_std 0.10``, a width that
follows the run's length, arXiv:2312.02696) because the run now spans sessions of unknown total
length; everything else (objective, schedule, batch 512, lr 4e-4) is the shipped recipe, trained
for many more steps. The AS-ARM preset adds an EMA and keeps the best validation weights
(the shipped run overfitted after ~47 epochs: validation 3.893 at step 3,750, 3.905 at 4,635).
Both text presets train with dropout 0.1 (embeddings and residual branches; issue 16): the shipped
6.5-minute runs overfitted the 1.6 M-token Brown train split (RADD: 83 epochs, validation flat at
4.615 with a 0.39-nat train/valid gap), so longer runs need a regulariser; RADD also keeps its best
validation weights. Toy evidence and the GPU plan: docs/perf/radd.md ("GPU plan for issue 16").
The distillation presets fine-tune a copy of the teacher: a quarter of its learning rate (1e-4 at
batch 256), a short warm-up, the same power EMA. AGD trains only new adapters (zero-initialised
outputs), so it takes a higher rate (1e-3 at batch 512) and ships them in float32 (0.6 MB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from decoding.train.agd import AGDConfig, AGDTask
from decoding.train.ar_image import ARTask, ARTaskConfig
from decoding.train.as_arm import AsArmConfig, AsArmTask
from decoding.train.classifier import ClassifierConfig, ClassifierTask
from decoding.train.dd_student import DDStudentTask, DDTaskConfig
from decoding.train.distill_guided import GuidedDistillConfig, GuidedDistillTask
from decoding.train.image import ImageConfig, ImageTask
from decoding.train.progressive import ProgressiveConfig, ProgressiveTask
from decoding.train.radd import RaddConfig, RaddTask
from decoding.train.task import Task
from decoding.train.vq import VQTask, VQTaskConfig


@dataclass(frozen=True)
class Recipe:
    """How to train one model of the zoo."""

    name: str
    summary: str
    task_cls: type[Task]
    config_cls: type
    config: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def make_task(self, config: dict[str, Any]) -> Task:
        """The task with ``config`` (a full config dict, e.g. the preset with the command line's changes)."""
        return self.task_cls(self.config_cls(**config))  # type: ignore[call-arg]


_IMAGE = {"batch_size": 512, "lr": 4e-4, "warmup": 200, "min_lr_ratio": 0.1, "beta2": 0.99, "grad_clip": 1.0,
          "ema_std": 0.10, "log_every": 50, "val_every": 500, "checkpoint_minutes": 4.0, "save_dtype": "bfloat16"}

_DISTILL = {"batch_size": 256, "lr": 1e-4, "warmup": 50, "min_lr_ratio": 0.1, "beta2": 0.99, "grad_clip": 1.0,
            "ema_std": 0.10, "log_every": 25, "val_every": 250, "checkpoint_minutes": 4.0, "save_dtype": "bfloat16"}

_DD = {"log_every": 50, "val_every": 500, "checkpoint_minutes": 4.0, "beta2": 0.95, "grad_clip": 1.0, "ema_std": 0.10}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("fashion-large", "class-conditional Fashion-MNIST diffusion UNet, 7.3 M parameters (GPU)", ImageTask,
               ImageConfig, {"size": "large"}, dict(_IMAGE)),
        Recipe("fashion-small", "class-conditional Fashion-MNIST diffusion UNet, 1/11 of large's FLOPs (GPU)", ImageTask,
               ImageConfig, {"size": "small"}, dict(_IMAGE)),
        Recipe("fashion-tiny", "a tiny UNet for tests and CPU smoke runs", ImageTask, ImageConfig, {"size": "tiny"},
               {**_IMAGE, "batch_size": 16, "lr": 3e-3, "warmup": 4, "log_every": 5, "val_every": 20, "ema_std": 0.10}),
        Recipe("distill-guided", "guided distillation stage 1 (arXiv 2210.03142): a w-conditioned student of a CFG "
               "teacher, one call per step (GPU)", GuidedDistillTask, GuidedDistillConfig, {"teacher": "fashion-large"},
               dict(_DISTILL)),
        Recipe("distill-progressive", "guided distillation stage 2: one progressive round, a 2N-step student -> N steps (GPU)",
               ProgressiveTask, ProgressiveConfig, {}, dict(_DISTILL)),
        Recipe("agd-fashion", "adapter guidance distillation (arXiv 2503.07274): guidance adapters (~2% of the parameters) "
               "on the frozen fashion-large, one call per step instead of CFG's two (GPU)", AGDTask, AGDConfig,
               {"base": "fashion-large"}, {**_DISTILL, "batch_size": 512, "lr": 1e-3, "warmup": 100, "save_dtype": "float32"}),
        Recipe("radd-brown", "RADD masked-diffusion text model on the Brown corpus (GPU)", RaddTask, RaddConfig,
               {"dropout": 0.1},
               {"batch_size": 256, "lr": 1e-3, "warmup": 300, "min_lr_ratio": 0.05, "beta2": 0.98, "weight_decay": 0.0,
                "grad_clip": 1.0, "ema_decay": 0.999, "keep_best": True, "log_every": 25, "val_every": 500,
                "checkpoint_minutes": 4.0, "save_dtype": "float16"}),
        Recipe("as-arm-brown", "any-subset autoregressive text model on the Brown corpus (GPU)", AsArmTask, AsArmConfig,
               {"dropout": 0.1}, {"batch_size": 128, "lr": 2e-3, "warmup": 200, "min_lr_ratio": 0.1, "beta2": 0.95,
                    "weight_decay": 0.1, "grad_clip": 1.0, "ema_decay": 0.999, "keep_best": True, "log_every": 25,
                    "val_every": 250, "checkpoint_minutes": 4.0, "save_dtype": "float16"}),
        Recipe("fashion-classifier", "the Fashion-MNIST CNN that checks class-conditional samples (CPU, minutes)",
               ClassifierTask, ClassifierConfig, {},
               {"steps": 4 * (60_000 // 128), "batch_size": 128, "lr": 3e-3, "warmup": 100, "min_lr_ratio": 0.0,
                "beta2": 0.999, "weight_decay": 1e-4, "grad_clip": 0.0, "log_every": 50, "val_every": 468,
                "save_dtype": "float32"}),
        Recipe("fashion-vq", "VQ tokenizer of Fashion-MNIST for the image AR model: 7x7 tokens, 256 codes of dim 8",
               VQTask, VQTaskConfig, {}, {**_DD, "batch_size": 256, "lr": 1e-3, "warmup": 200, "save_dtype": "float32"}),
        Recipe("fashion-ar", "class-conditional AR transformer over fashion-vq tokens, the DD teacher (GPU)", ARTask,
               ARTaskConfig, {}, {**_DD, "batch_size": 256, "lr": 5e-4, "warmup": 500, "weight_decay": 0.05,
                                  "save_dtype": "bfloat16", "keep_best": True}),
        Recipe("fashion-ar-dd", "Distilled Decoding student of fashion-ar (arXiv 2412.17153): 1 or 2 steps (GPU)",
               DDStudentTask, DDTaskConfig, {}, {**_DD, "batch_size": 256, "lr": 2e-4, "warmup": 200,
                                                 "save_dtype": "bfloat16", "keep_best": True}),
    )
}


def recipe(name: str) -> Recipe:
    """The recipe of ``name``; a ValueError listing the known names otherwise."""
    if name not in RECIPES:
        known = ", ".join(RECIPES)
        raise ValueError(f"unknown model {name!r}; trainable models: {known}")
    return RECIPES[name]
