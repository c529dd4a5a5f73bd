"""What both stages of guided distillation share (Meng et al., arXiv 2210.03142): data, teacher, student, export.

A distillation run is a task of the training skeleton (:mod:`decoding.train.loop`): resumable,
time-budgeted, EMA, bf16 autocast on CUDA. The teacher is frozen on the training device; the
student starts from the teacher's weights (:func:`~decoding.distill.student.student_from_teacher`)
and is trained on Fashion-MNIST training images noised by the teacher's schedule. The student's
output is v (the teacher's parameterisation) and the loss is the v-MSE, i.e. the "SNR + 1"
weighting of the x0-error of Salimans & Ho (arXiv 2202.00512, sec. 4). Subclasses give
:meth:`DistillTask.distill_loss` and the card fields of their stage.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from decoding.data.fashion_mnist import fashion_splits
from decoding.data.weights import dtype_from_name
from decoding.distill.student import student_from_teacher
from decoding.distill.targets import cfg_scale
from decoding.io import atomic_write_bytes
from decoding.models.image import load_unet, read_config, resolve_checkpoint, save_unet, schedule_from_config
from decoding.nn.unet import UNet
from decoding.train.task import Task, batched_mean, require_each

KIND = "distilled-diffusion"
W_CONVENTION = "guided prediction (1 + w) c - w u (Meng et al.); the engine's CFG scale is s = 1 + w"
_VALID_SEED = 4321


@dataclass
class DistillConfig:
    """Options of a distillation run (CLI flags of ``decoding train distill-*``).

    Attributes:
        teacher: the teacher's folder or zoo name: an image diffusion model (stage 1) or a distilled
            student (stage 2).
        w_min, w_max: range of Meng et al.'s guidance weight w (``(1 + w) c - w u``; CFG scale 1 + w)
            drawn uniformly per example; default [0, 4] in stage 1, the teacher's range in stage 2.
        default_w: the weight the student's card uses when a call gives none (the teacher's best CFG).
        data: Fashion-MNIST folder (IDX files); default ``$DECODING_FASHION_MNIST`` or the Debian path.
        limit_data: train on the first N images only (tests).
        val_limit: validate on the first N test images.
        val_batch: images per validation forward.
        channels_last: NHWC activations (faster convolutions on GPUs).
        attention: attention backend (``sdpa``, ``xformers``, ``naive``; default automatic).
    """

    teacher: str | None = None
    w_min: float | None = None
    w_max: float | None = None
    default_w: float = 0.5
    data: str | None = None
    limit_data: int | None = None
    val_limit: int | None = 2000
    val_batch: int = 500
    channels_last: bool = True
    attention: str | None = None

    def check(self) -> None:
        if not self.teacher:
            raise ValueError("--teacher is required: the model to distil (a folder or a zoo name)")
        require_each(self, ("w_min", "w_max"), lambda v: v is None or v >= 0, "be >= 0 (w = 0 is the conditional model)")
        require_each(self, ("limit_data", "val_limit", "val_batch"), lambda v: v is None or v >= 1, "be >= 1")


def sample_w(b: int, w_range: tuple[float, float], generator: torch.Generator) -> Tensor:
    """``(B,)`` weights uniform on ``w_range``, on the generator's device."""
    lo, hi = w_range
    return lo + (hi - lo) * torch.rand(b, generator=generator, device=generator.device)


def noised(x0: Tensor, alpha: Tensor, sigma: Tensor, generator: torch.Generator, channels_last: bool = False) -> Tensor:
    """``alpha x0 + sigma eps`` for images ``(B, C, H, W)`` and ``(B,)`` coefficients, in ``x0``'s dtype."""
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    z = alpha.to(x0.dtype).view(-1, 1, 1, 1) * x0 + sigma.to(x0.dtype).view(-1, 1, 1, 1) * eps
    return z.contiguous(memory_format=torch.channels_last) if channels_last else z


class DistillTask(Task):
    """The shared part of both stages; subclasses implement :meth:`distill_loss`, :meth:`card_fields` and may check the teacher."""

    kind: ClassVar[str] = "distill"
    SESSION: ClassVar[frozenset[str]] = frozenset({"data", "channels_last", "attention", "val_batch"})
    loss_name = "distillation loss (v-MSE)"
    stage: ClassVar[int] = 0

    def __init__(self, config: DistillConfig) -> None:
        config.check()
        self.config = config

    # ---- teacher and data ----------------------------------------------------------------------

    def _read_teacher(self) -> dict[str, Any]:
        config = read_config(self.config.teacher)
        if config.get("prediction") != "v":
            raise ValueError(f"teacher {self.config.teacher} predicts {config.get('prediction')!r}; distillation needs a v-prediction model")
        self.teacher_config = config
        self.schedule = schedule_from_config(config["schedule"])
        lo, hi = self.check_teacher(config)
        c = self.config
        self.w_range = (lo if c.w_min is None else c.w_min, hi if c.w_max is None else c.w_max)
        if not lo <= self.w_range[0] < self.w_range[1] <= hi:
            raise ValueError(f"[--w-min, --w-max] = {list(self.w_range)} must be an interval inside [{lo:g}, {hi:g}] "
                             "(stage 2: the teacher's trained range)")
        if not self.w_range[0] <= c.default_w <= self.w_range[1]:
            raise ValueError(f"--default-w {c.default_w} must lie in [--w-min, --w-max] = {list(self.w_range)}")
        return config

    @abstractmethod
    def check_teacher(self, config: dict[str, Any]) -> tuple[float, float]:
        """Raise ValueError when the teacher's card does not suit this stage; return the widest allowed w range."""

    def setup(self, device: torch.device) -> dict[str, Any]:
        c = self.config
        self._read_teacher()
        train, valid, info = fashion_splits(c.data, c.limit_data, c.val_limit, device, c.channels_last)
        (self.x, self.y), (self.val_x, self.val_y) = train, valid
        self.device = device
        teacher, _ = load_unet(c.teacher, "cpu")
        self.teacher_cpu = teacher
        net = copy.deepcopy(teacher).to(device).eval().requires_grad_(False)
        if c.channels_last:
            net = net.to(memory_format=torch.channels_last)
        net.set_attention_backend(c.attention)
        self.teacher = net
        self.setup_stage(device)
        return {**info, "teacher": str(resolve_checkpoint(c.teacher))}

    def setup_stage(self, device: torch.device) -> None:  # noqa: B027 (optional hook)
        """Stage-specific tables on ``device`` (noise levels, time grids), after the teacher is loaded."""

    def bind(self, data_info: dict[str, Any]) -> None:
        teacher, _ = load_unet(self.config.teacher, "cpu")
        self.teacher_cpu = teacher
        self._read_teacher()

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])

    # ---- network -------------------------------------------------------------------------------

    def build(self) -> nn.Module:
        return student_from_teacher(self.teacher_cpu)

    def prepare(self, net: nn.Module, device: torch.device) -> nn.Module:
        net = net.to(device)
        if self.config.channels_last:
            net = net.to(memory_format=torch.channels_last)
        assert isinstance(net, UNet)
        net.set_attention_backend(self.config.attention)
        return net

    # ---- losses --------------------------------------------------------------------------------

    @abstractmethod
    def distill_loss(self, net: Callable[..., Tensor], x0: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
        """The scalar loss of the images ``x0`` ``(B, 1, 28, 28)`` with labels ``(B,)``; randomness from ``generator``."""

    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        return self.distill_loss(net, self.x[indices], self.y[indices], generator)

    def validate(self, net: nn.Module) -> dict[str, float]:
        """The same loss on the test images with the same draws every call."""
        c = self.config

        def loss_of(x0: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
            return self.distill_loss(net, x0, y, g).float()

        return {"loss": batched_mean(loss_of, self.val_x, self.val_y, c.val_batch, _VALID_SEED, self.device)}

    # ---- export --------------------------------------------------------------------------------

    @abstractmethod
    def card_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(distill, defaults)``: this stage's ``"distill"`` card entry and its sampling defaults."""

    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        """The student folder: ``config.json`` (kind ``distilled-diffusion``), ``model.safetensors`` and ``README.md``."""
        from decoding.distill.card import render_card

        assert isinstance(net, UNet)
        net.set_attention_backend(None)
        c, t = self.config, self.teacher_config
        distill, defaults = self.card_fields()
        origin = t.get("distill", {}).get("origin") or str(c.teacher)
        meta = {
            "kind": KIND,
            "defaults": {**defaults, "guidance": f"cfg:{cfg_scale(c.default_w):g}"},
            "prediction": "v",
            "schedule": dict(t["schedule"]),
            "classes": list(t.get("classes", [])),
            "image_range": t.get("image_range", [-1.0, 1.0]),
            "data": t.get("data", "Fashion-MNIST train"),
            "distill": {"method": "Meng et al., On Distillation of Guided Diffusion Models (arXiv 2210.03142)",
                        "stage": self.stage, "teacher": str(c.teacher), "origin": origin,
                        "w_range": list(self.w_range), "w_convention": W_CONVENTION, "default_w": c.default_w, **distill},
            "training": {**info["options"], **info["summary"], "command": info.get("command", "")},
        }
        save_unet(net, out, meta, dtype=dtype_from_name(info["options"]["save_dtype"]))
        log = {"command": info.get("command", ""), "config": info["options"], **info["summary"]}
        atomic_write_bytes(out / "README.md", render_card(out, log).encode())
        return [out / "config.json", out / "model.safetensors", out / "README.md"]
