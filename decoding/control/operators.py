"""Conditions for steering: the inverse model of a task as a loss on the clean-image estimate ``x0``.

Each condition holds an observation ``y`` and a differentiable loss ``L(x0) -> (B,)`` (Steered
Diffusion, Nair et al., arXiv 2310.00224: "a loss built from an inverse model of the task"):

- :class:`Inpaint`: ``y = m * x`` (mask ``m``, 1 = known pixel): box or random pixels;
- :class:`SuperResolution`: ``y = avgpool_f(x)`` (``f x f`` box downsampling, e.g. 4x: 28 -> 7);
- :class:`Deblur`: ``y = k * x`` (a normalised Gaussian blur, zero padding on the black background);
- :class:`ClassifierLoss`: ``-log p(label | x0)`` of a classifier (semantic steering).

The linear ones are Gaussian likelihoods ``L = ||A x0 - y||^2 / (2 noise^2)`` (DPS uses the residual
norm ``||A x0 - y||`` instead, :meth:`distance`) and report the
curvature ``||A^T A|| / noise^2`` (the largest eigenvalue of the loss's Hessian), which the steering
step uses to stay stable (:mod:`decoding.control.steer`); ``project(x0)`` is the closest point
with ``A x0 = y`` where it is cheap (the replacement baseline). Several conditions combine by
summing their losses and curvatures. Images are ``(B, C, H, W)`` in [-1, 1]; an observation of
batch 1 applies to every row.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from decoding.control.rewards import ClassifierReward


class Condition(Protocol):
    """What steering needs from a task: ``loss(x0) -> (B,)``, a curvature bound (0 = unknown) and,
    for DPS, ``distance(x0) -> (B,)`` (the residual norm ``||A x0 - y||``; a classifier's loss)."""

    curvature: float

    def loss(self, x0: Tensor) -> Tensor: ...

    def distance(self, x0: Tensor) -> Tensor: ...

    def spec(self) -> str: ...


def condition_tuple(conditions: tuple[object, ...], owner: str) -> tuple[object, ...]:
    """The conditions given to ``owner`` (as arguments or one list), checked to be conditions."""
    if len(conditions) == 1 and isinstance(conditions[0], list | tuple):
        conditions = tuple(conditions[0])
    if not conditions:
        raise ValueError(f"{owner} needs at least one condition (e.g. Inpaint(image, mask))")
    for c in conditions:
        if not (callable(getattr(c, "loss", None)) and hasattr(c, "curvature")):
            raise ValueError(f"{type(c).__name__} is not a condition: it needs loss(x0) -> (B,) and a curvature")
    return tuple(conditions)


def _image(y: Tensor, name: str) -> Tensor:
    y = torch.as_tensor(y)
    if y.dim() == 3:
        y = y[None]
    if y.dim() != 4 or not y.is_floating_point():
        raise ValueError(f"{name} must be a float image (B, C, H, W) or (C, H, W) in [-1, 1], got {y.dtype} {tuple(y.shape)}")
    return y


def _noise(noise: float) -> float:
    if not (noise > 0 and math.isfinite(noise)):
        raise ValueError(f"the observation noise must be > 0 (use a small value such as 0.01 for exact data), got {noise}")
    return float(noise)


def _gaussian(r: Tensor, noise: float) -> Tensor:
    """``||r||^2 / (2 noise^2)`` per sample."""
    return 0.5 * (r * r).flatten(1).sum(1) / noise**2


def _norm(r: Tensor) -> Tensor:
    """``||r||`` per sample (differentiable at 0: a zero residual has zero gradient)."""
    return (r * r).flatten(1).sum(1).clamp_min(1e-30).sqrt()


def _rows(y: Tensor, x: Tensor) -> Tensor:
    """``y`` on ``x``'s device, broadcast over a batch of ``x`` (a batch-1 observation serves every row)."""
    y = y.to(x.device, x.dtype)
    if y.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"the observation has {y.shape[0]} rows but the batch has {x.shape[0]}; give 1 or {x.shape[0]}")
    return y


class _LinearGaussian:
    """Shared pieces of a linear observation ``y = A x + noise``: subclasses set ``y``, ``noise`` and
    ``observe`` (``A``); the residual, Gaussian loss, distance and RMSE agreement follow from them."""

    y: Tensor
    noise: float

    def observe(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def residual(self, x0: Tensor) -> Tensor:
        return self.observe(x0) - _rows(self.y, x0)

    def loss(self, x0: Tensor) -> Tensor:
        return _gaussian(self.residual(x0), self.noise)

    def distance(self, x0: Tensor) -> Tensor:
        return _norm(self.residual(x0))

    def agreement(self, x: Tensor) -> Tensor:
        return self.residual(x).flatten(1).pow(2).mean(1).sqrt()


class Inpaint(_LinearGaussian):
    """Known pixels: ``A x = m * x``.

    Args:
        observed: the image (its unknown pixels are ignored), ``(B or 1, C, H, W)``.
        mask: 1 (or True) where the pixel is known, same shape (or broadcastable over channels).
        noise: the observation noise ``sigma_y`` (std of the Gaussian likelihood).
    """

    def __init__(self, observed: Tensor, mask: Tensor, noise: float = 0.01) -> None:
        self.y = _image(observed, "observed")
        m = torch.as_tensor(mask)
        m = m[None] if m.dim() == 3 else m
        if m.dim() != 4 or m.shape[-2:] != self.y.shape[-2:]:
            raise ValueError(f"mask must have the image's height and width {tuple(self.y.shape[-2:])}, got {tuple(m.shape)}")
        m = m.to(self.y.dtype)
        if bool(((m != 0) & (m != 1)).any()):
            raise ValueError("mask values must be 0 (unknown) or 1 (known)")
        self.mask = m
        self.noise = _noise(noise)
        self.curvature = float(m.max()) / self.noise**2 if m.numel() else 0.0

    def observe(self, x: Tensor) -> Tensor:
        return self.mask.to(x.device, x.dtype) * x

    def residual(self, x0: Tensor) -> Tensor:
        return self.observe(x0) - self.observe(_rows(self.y, x0))

    def project(self, x0: Tensor) -> Tensor:
        m = self.mask.to(x0.device, x0.dtype)
        return m * _rows(self.y, x0) + (1 - m) * x0

    def agreement(self, x: Tensor) -> Tensor:
        """``(B,)`` RMSE between ``A x`` and the observation over the known pixels."""
        m = self.mask.to(x.device, x.dtype).expand_as(x)
        r = (x - _rows(self.y, x)) * m
        return ((r * r).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)).sqrt()

    def spec(self) -> str:
        return f"inpaint:known={float(self.mask.mean()):.3f},noise={self.noise:g}"


class SuperResolution(_LinearGaussian):
    """``A x = avgpool_f(x)``: the observation is ``(B, C, H / f, W / f)``.

    ``A A^T = I / f^2``, so the curvature is ``1 / (f^2 noise^2)`` and the projection onto
    ``A x = y`` adds the nearest-upsampled residual (``A^+ = f^2 A^T``).
    """

    def __init__(self, low: Tensor, factor: int = 4, noise: float = 0.01) -> None:
        self.y = _image(low, "low-resolution image")
        if not (isinstance(factor, int) and factor >= 1):
            raise ValueError(f"factor must be a whole number >= 1, got {factor!r}")
        self.factor, self.noise = factor, _noise(noise)
        self.curvature = 1.0 / (factor**2 * self.noise**2)

    def observe(self, x: Tensor) -> Tensor:
        f = self.factor
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of the factor {f}")
        return F.avg_pool2d(x, f)

    def project(self, x0: Tensor) -> Tensor:
        r = -self.residual(x0)
        return x0 + F.interpolate(r, scale_factor=self.factor, mode="nearest")

    def spec(self) -> str:
        return f"sr:{self.factor}x,noise={self.noise:g}"


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    """A normalised 2-D Gaussian kernel ``(size, size)`` (default size ``2 ceil(3 sigma) + 1``)."""
    if not sigma > 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}")
    size = size or 2 * math.ceil(3 * sigma) + 1
    if size % 2 == 0:
        raise ValueError(f"the kernel size must be odd, got {size}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    k = g[:, None] * g[None]
    return (k / k.sum()).float()


class Deblur(_LinearGaussian):
    """``A x = k * (x + 1) - 1``: a Gaussian blur of the image in [0, 2] with zero padding (black outside).

    The kernel is non-negative and sums to 1, so ``||A|| <= 1`` and the curvature is at most
    ``1 / noise^2``. There is no cheap exact projection (``project`` is not offered).
    """

    def __init__(self, blurred: Tensor, sigma: float = 1.5, noise: float = 0.01, size: int | None = None) -> None:
        self.y = _image(blurred, "blurred image")
        self.sigma, self.noise = float(sigma), _noise(noise)
        self.kernel = gaussian_kernel(sigma, size)
        self.curvature = 1.0 / self.noise**2

    def observe(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.device, x.dtype)[None, None].expand(c, 1, -1, -1)
        return F.conv2d(x + 1, k, padding=k.shape[-1] // 2, groups=c) - 1

    def spec(self) -> str:
        return f"deblur:sigma={self.sigma:g},noise={self.noise:g}"


class ClassifierLoss:
    """``-weight * log p(label | x0)`` under a classifier (semantic steering); curvature unknown (0)."""

    def __init__(self, label: int, classifier: object = "fashion-classifier", weight: float = 1.0,
                 device: str | torch.device | None = None) -> None:
        self.reward = classifier if isinstance(classifier, ClassifierReward) else ClassifierReward(label, classifier, device)
        self.label = self.reward.label if isinstance(classifier, ClassifierReward) else label
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.curvature = 0.0

    def loss(self, x0: Tensor) -> Tensor:
        return -self.weight * self.reward.log_probs(x0)[:, self.label].to(x0.dtype)

    def distance(self, x0: Tensor) -> Tensor:
        """No residual to measure: DPS uses the loss itself."""
        return self.loss(x0)

    def agreement(self, x: Tensor) -> Tensor:
        """``(B,)`` probability of the label."""
        with torch.no_grad():
            return self.reward.log_probs(x)[:, self.label].exp()

    def spec(self) -> str:
        return f"class:{self.label},weight={self.weight:g}"


def box_mask(size: int = 28, box: tuple[int, int, int, int] | None = None, channels: int = 1) -> Tensor:
    """``(1, C, size, size)`` mask, 0 inside the box ``(top, left, height, width)`` (default: the centre half), 1 outside."""
    top, left, h, w = box if box is not None else (size // 4, size // 4, size // 2, size // 2)
    if not (0 <= top and 0 <= left and h >= 1 and w >= 1 and top + h <= size and left + w <= size):
        raise ValueError(f"box {box} does not fit a {size}x{size} image")
    m = torch.ones(1, channels, size, size)
    m[..., top : top + h, left : left + w] = 0
    return m


def random_mask(n: int, keep: float, size: int = 28, channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """``(n, C, size, size)`` masks keeping each pixel with probability ``keep`` (same for every channel)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    m = (torch.rand(n, 1, size, size, generator=generator) < keep).float()
    return m.expand(-1, channels, -1, -1).clone()
