"""Training task of the class-conditional Fashion-MNIST diffusion UNets (fashion-large, fashion-small).

Objective: v-prediction (Salimans & Ho, arXiv:2202.00512) or eps-prediction (Ho et al.,
arXiv:2006.11239) MSE on a variance-preserving process with the cosine schedule of Nichol &
Dhariwal (arXiv:2102.09672) in diffusers' discrete form (``TRAIN_SCHEDULE``), labels dropped to
the null class with probability ``label_dropout`` for classifier-free guidance (arXiv:2207.12598).

Noise levels (``noise_levels``):

- ``cosine`` (default, the shipped models): ``t ~ U[0, 999]`` on the schedule, so the half log-SNR
  ``lambda = log(alpha / sigma)`` has the hyperbolic-secant density of the cosine schedule
  (centre 0, s.d. ~1.6). With v-prediction this is Kingma & Gao's weighting ``w(lambda) ~ e^(-lambda/2)``
  (arXiv:2303.00848).
- ``lognormal``: EDM's training distribution (Karras et al., arXiv:2206.00364, sec. 5):
  ``ln sigma_VE = -lambda ~ N(p_mean, p_std^2)``, clamped to the schedule's range. v-prediction is
  EDM's preconditioned F-target with ``sigma_data = 1``; Fashion-MNIST in [-1, 1] has
  ``sigma_data = 0.706``, so EDM's ``P_mean = -1.2`` (for ``sigma_data = 0.5``) maps to
  ``-1.2 + ln(0.706 / 0.5) = -0.86``: more of the training signal on the low and middle noise
  levels that shape fine detail, less on the nearly-pure-noise end. The sampler is unchanged
  (the network still sees ``lambda`` of the same VP schedule).

Loss weight (``sigma_data``): with ``sigma_data = 1`` the v-MSE is EDM's preconditioned loss for unit
data variance; ``sigma_data = 0.706`` (Fashion-MNIST's) gives EDM's weighting for the actual data
scale, ``alpha^2 + sigma^2 / sigma_data^2`` on the v-error (up to 2x more weight on the noisiest
levels). The network's output stays v, so sampling and checkpoints are unchanged.

The data live on the training device (60,000 images are 188 MB in float32), channels_last.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decoding.data.fashion_mnist import CLASSES, fashion_splits
from decoding.data.weights import dtype_from_name
from decoding.models.image import SIZES, TRAIN_SCHEDULE, save_unet, schedule_from_config
from decoding.nn.unet import UNet, UNetConfig
from decoding.solvers.schedules import DiscreteVPSchedule
from decoding.train.task import Task, batched_mean, require_each

__all__ = ["TRAIN_SCHEDULE", "ImageConfig", "ImageTask", "NoiseLevels", "alpha_sigma", "cosine_log_snr", "diffusion_loss"]

NOISE_LEVELS = ("cosine", "lognormal")
_VALID_SEED = 1234


class NoiseLevels:
    """Draw training noise levels ``lambda`` (half log-SNR) for a discrete VP schedule, on the training device.

    ``kind="cosine"``: ``t ~ U[0, N-1]`` and ``lambda(t)`` interpolated linearly between integer
    timesteps, exactly as :meth:`decoding.solvers.schedules.DiscreteVPSchedule.lambda_` does, so every
    noise level a sampler's grid can visit (fractional timesteps included) is trained on.
    ``kind="lognormal"``: ``lambda = -(p_mean + p_std * n)``, ``n ~ N(0, 1)``, clamped to ``[lambda(N-1), lambda(0)]``.
    """

    def __init__(
        self, schedule: DiscreteVPSchedule, device: torch.device, kind: str = "cosine", p_mean: float = -0.86,
        p_std: float = 1.2,
    ) -> None:
        if kind not in NOISE_LEVELS:
            raise ValueError(f"noise levels must be one of {NOISE_LEVELS}, got {kind!r}")
        if p_std <= 0:
            raise ValueError(f"--p-std must be > 0, got {p_std}")
        self.schedule, self.kind, self.p_mean, self.p_std = schedule, kind, float(p_mean), float(p_std)
        self.table = schedule.lambdas.to(device, torch.float32)  # (N,) half log-SNR, decreasing
        self.n = int(self.table.numel())
        self.lo, self.hi = float(self.table[-1]), float(self.table[0])

    def sample(self, b: int, generator: torch.Generator) -> Tensor:
        """``(B,)`` half log-SNR ``lambda = log(alpha / sigma)`` of random noise levels."""
        if self.kind == "lognormal":
            n = torch.randn(b, generator=generator, device=self.table.device)
            return (-(self.p_mean + self.p_std * n)).clamp(self.lo, self.hi)
        t = torch.rand(b, generator=generator, device=self.table.device) * (self.n - 1)
        lo = t.floor().long().clamp(max=self.n - 2)
        w = t - lo
        return torch.lerp(self.table[lo], self.table[lo + 1], w)


def cosine_log_snr(t: Tensor) -> Tensor:
    """Full log-SNR ``log(alpha^2 / sigma^2)`` of the training schedule at ``t`` in [0, 1] (``t * 999`` steps).

    Kept for callers written against the first version of this module (``decoding.evals.closed_form``);
    new code should take a :class:`~decoding.solvers.schedules.VPSchedule` and use its ``lambda_``.
    """
    schedule = schedule_from_config(TRAIN_SCHEDULE)
    steps = schedule.num_train_timesteps - 1  # type: ignore[attr-defined]
    return (2 * schedule.lambda_(t.double().cpu().clamp(0, 1) * steps)).to(t.device, torch.float32)


def alpha_sigma(lam: Tensor) -> tuple[Tensor, Tensor]:
    """``(alpha, sigma)`` of a VP process from ``lambda = log(alpha / sigma)``: ``alpha^2 = sigmoid(2 lambda)``."""
    return torch.sigmoid(2 * lam).sqrt(), torch.sigmoid(-2 * lam).sqrt()


def diffusion_loss(
    net: Callable[..., Tensor],
    x0: Tensor,
    labels: Tensor,
    levels: NoiseLevels,
    generator: torch.Generator,
    prediction: str,
    label_dropout: float,
    null_class: int,
    autocast: bool = False,
    channels_last: bool = True,
    sigma_data: float = 1.0,
) -> Tensor:
    """Mean squared error of the network's eps or v on noised images.

    Args:
        x0: ``(B, 1, 28, 28)`` clean images in [-1, 1].
        labels: ``(B,)`` long; each is replaced by ``null_class`` with probability ``label_dropout``.
        generator: the random source for label dropout, noise levels and noise (in that order).
        autocast: run the network under bf16 autocast here (the training skeleton sets autocast itself).
        sigma_data: v-prediction only: weight each image's v-error by ``alpha^2 + sigma^2 / sigma_data^2``,
            which is EDM's loss weight ``(sigma_e^2 + sigma_data^2) / (sigma_e sigma_data)^2`` on the x0-error
            (``sigma_e = sigma / alpha``; arXiv:2206.00364, eq. 8) written for the v-error. ``1``: plain v-MSE.
    """
    b, dev = x0.shape[0], x0.device
    drop = torch.rand(b, generator=generator, device=dev) < label_dropout
    labels = labels.masked_fill(drop, null_class)
    lam = levels.sample(b, generator)
    alpha, sigma = (a.view(b, 1, 1, 1) for a in alpha_sigma(lam))
    eps = torch.randn(x0.shape, generator=generator, device=dev)
    xt = alpha * x0 + sigma * eps
    if channels_last:
        xt = xt.contiguous(memory_format=torch.channels_last)
    target = eps if prediction == "eps" else alpha * eps - sigma * x0
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        out = net(xt, lam, labels)
    if sigma_data == 1.0:
        return F.mse_loss(out.float(), target)
    weight = alpha**2 + sigma**2 / sigma_data**2  # (B, 1, 1, 1)
    return (weight * (out.float() - target) ** 2).mean()


@dataclass
class ImageConfig:
    """Options of the image task (CLI flags of ``decoding train fashion-*``).

    Attributes:
        size: the UNet preset of :data:`decoding.models.image.SIZES` (``large``, ``small``, ``tiny``).
        channels, num_res_blocks, attention_levels, dropout: override the preset's sizes (a new
            architecture; the shipped file must stay <= 16 MB).
        data: Fashion-MNIST folder (IDX files); default ``$DECODING_FASHION_MNIST`` or the Debian path.
        prediction: ``v`` or ``eps``.
        label_dropout: probability of the null class (classifier-free guidance).
        noise_levels, p_mean, p_std: training noise-level distribution (see the module docstring).
        sigma_data: EDM's loss weighting for the v-error with this data standard deviation (0.706 for
            Fashion-MNIST in [-1, 1]); 1 is plain v-MSE (the shipped models).
        channels_last: NHWC activations (faster convolutions on GPUs).
        attention: attention backend (``sdpa``, ``xformers``, ``naive``; default automatic).
        limit_data: train on the first N images only (tests).
        val_limit: validate on the first N test images (default all 10,000).
        val_batch: images per validation forward.
    """

    size: str = "large"
    channels: int | None = None
    num_res_blocks: int | None = None
    attention_levels: list[int] | None = None
    dropout: float | None = None
    data: str | None = None
    prediction: str = "v"
    label_dropout: float = 0.1
    noise_levels: str = "cosine"
    p_mean: float = -0.86
    p_std: float = 1.2
    sigma_data: float = 1.0
    channels_last: bool = True
    attention: str | None = None
    limit_data: int | None = None
    val_limit: int | None = None
    val_batch: int = 1000

    def unet_config(self) -> UNetConfig:
        """The network's sizes: the preset with the overrides."""
        if self.size not in SIZES:
            raise ValueError(f"unknown UNet size {self.size!r}; choose from {sorted(SIZES)}")
        cfg = copy.deepcopy(SIZES[self.size]).to_dict()
        overrides = {"channels": self.channels, "num_res_blocks": self.num_res_blocks,
                     "attention_levels": self.attention_levels, "dropout": self.dropout}
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        return UNetConfig.from_dict(cfg)

    def check(self) -> None:
        self.unet_config()
        require_each(self, ("prediction",), lambda v: v in ("v", "eps"), "be 'v' or 'eps'")
        require_each(self, ("label_dropout",), lambda v: 0.0 <= v < 1.0, "lie in [0, 1)")
        require_each(self, ("noise_levels",), lambda v: v in NOISE_LEVELS, f"be one of {', '.join(NOISE_LEVELS)}")
        require_each(self, ("sigma_data",), lambda v: v > 0 and (v == 1.0 or self.prediction == "v"),
                     "be > 0, and differ from 1 only with --prediction v")
        require_each(self, ("limit_data", "val_limit", "val_batch"), lambda v: v is None or v >= 1, "be >= 1")


class ImageTask(Task):
    """Class-conditional diffusion on Fashion-MNIST; validation is the same loss on the test set."""

    kind: ClassVar[str] = "image"
    SESSION: ClassVar[frozenset[str]] = frozenset({"data", "channels_last", "attention", "val_batch"})
    loss_name = "diffusion loss (MSE)"

    def __init__(self, config: ImageConfig) -> None:
        config.check()
        self.config = config
        schedule = schedule_from_config(TRAIN_SCHEDULE)
        assert isinstance(schedule, DiscreteVPSchedule)
        self.schedule = schedule

    def setup(self, device: torch.device) -> dict[str, Any]:
        c = self.config
        train, valid, info = fashion_splits(c.data, c.limit_data, c.val_limit, device, c.channels_last)
        (self.x, self.y), (self.val_x, self.val_y) = train, valid
        self.device = device
        self.levels = NoiseLevels(self.schedule, device, c.noise_levels, c.p_mean, c.p_std)
        return info

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])

    def build(self) -> nn.Module:
        return UNet(self.config.unet_config())

    def prepare(self, net: nn.Module, device: torch.device) -> nn.Module:
        net = net.to(device)
        if self.config.channels_last:
            net = net.to(memory_format=torch.channels_last)
        assert isinstance(net, UNet)
        net.set_attention_backend(self.config.attention)
        return net

    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        c = self.config
        null = c.unet_config().num_classes
        return diffusion_loss(net, self.x[indices], self.y[indices], self.levels, generator, c.prediction,
                              c.label_dropout, null, channels_last=c.channels_last, sigma_data=c.sigma_data)

    def validate(self, net: nn.Module) -> dict[str, float]:
        """Mean conditional loss (no label dropout) on the test images, with the same noise every call."""
        c = self.config

        def loss_of(x0: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
            return diffusion_loss(net, x0, y, self.levels, g, c.prediction, 0.0, 0, channels_last=c.channels_last,
                                  sigma_data=c.sigma_data)

        return {"loss": batched_mean(loss_of, self.val_x, self.val_y, c.val_batch, _VALID_SEED, self.device)}

    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        assert isinstance(net, UNet)
        net.set_attention_backend(None)
        opts = info["options"]
        meta = {
            "prediction": self.config.prediction,
            "schedule": dict(TRAIN_SCHEDULE),
            "classes": list(CLASSES),
            "image_range": [-1.0, 1.0],
            "data": "Fashion-MNIST train (60,000 images), Debian package dataset-fashion-mnist",
            "training": {**opts, **info["summary"], "command": info.get("command", "")},
        }
        save_unet(net, out, meta, dtype=dtype_from_name(opts["save_dtype"]))
        return [out / "config.json", out / "model.safetensors"]


if __name__ == "__main__":
    raise SystemExit("decoding.train.image is a training task: run `python -m decoding.train fashion-large ...` (see `decoding train --help`)")
