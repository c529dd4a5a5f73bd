"""Restoration metrics: PSNR and SSIM of images in [-1, 1] against the ground truth.

- PSNR: ``10 log10(1 / MSE)`` with pixels mapped to [0, 1] (data range 1), per image.
- SSIM (Wang et al., IEEE TIP 2004): a Gaussian window (``sigma = 1.5``, 11 taps, normalised),
  ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = 1``, population (not sample) covariances, the
  mean of the SSIM map over the pixels whose window fits the image (a 'valid' filter). This is
  scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``, whose map it crops the same way (golden values in
  the tests).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _unit(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` float64 in [0, 1] from images in [-1, 1] (clamped)."""
    if x.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(x.shape)}")
    return (x.to(torch.float64).clamp(-1, 1) + 1) / 2


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    a, b = _unit(x), _unit(y)
    if b.shape[0] == 1 and a.shape[0] > 1:
        b = b.expand_as(a)
    if a.shape != b.shape:
        raise ValueError(f"images {tuple(x.shape)} and references {tuple(y.shape)} differ in shape")
    return a, b


def psnr(x: Tensor, truth: Tensor) -> Tensor:
    """``(B,)`` PSNR in dB (data range 1 after mapping [-1, 1] to [0, 1]); identical images give ``inf``."""
    a, b = _pair(x, truth)
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


def _window(sigma: float = 1.5, radius: int = 5) -> Tensor:
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return g / g.sum()


def ssim(x: Tensor, truth: Tensor, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """``(B,)`` mean SSIM per image (channels averaged), see the module docstring."""
    a, b = _pair(x, truth)
    radius = int(3.5 * sigma + 0.5)
    if min(a.shape[-2:]) < 2 * radius + 1:
        raise ValueError(f"SSIM with sigma={sigma} needs images of at least {2 * radius + 1} pixels a side")
    w = _window(sigma, radius)
    c = a.shape[1]
    wx = w.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    wy = w.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * 1.0) ** 2, (k2 * 1.0) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def summary(values: Tensor) -> dict[str, float]:
    """Mean and standard error of per-image values (finite ones; ``inf`` PSNR of exact copies is skipped)."""
    v = values.to(torch.float64)
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return {"mean": math.nan, "se": math.nan}
    se = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else math.nan
    return {"mean": float(v.mean()), "se": se}
