"""PSNR / SSIM against golden values of scikit-image 0.25 and the SMC resampling rule."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from decoding.control.metrics import psnr, ssim, summary
from decoding.control.smc import systematic_resample


def pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    i, j = torch.meshgrid(torch.arange(28.0, dtype=torch.float64), torch.arange(28.0, dtype=torch.float64), indexing="ij")
    a = 0.5 + 0.4 * torch.sin(i / 4.0) * torch.cos(j / 5.0)
    b = (a + 0.1 * torch.cos(i * j / 7.0)).clamp(0, 1)
    c = (i * j % 17) / 16.0
    return tuple((t * 2 - 1)[None, None] for t in (a, b, c))


def test_ssim_and_psnr_match_scikit_image() -> None:
    """Golden values: ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1.0)`` and ``peak_signal_noise_ratio(a, b, data_range=1.0)``
    on the same [0, 1] images (scikit-image 0.25, numpy float64)."""
    a, b, c = pair()
    assert float(ssim(a, b)) == pytest.approx(0.7417736506954922, abs=1e-9)
    assert float(ssim(a, c)) == pytest.approx(-0.002723658431278318, abs=1e-9)
    assert float(psnr(a, b)) == pytest.approx(22.600659550743284, abs=1e-9)
    assert float(ssim(a, a)) == pytest.approx(1.0) and math.isinf(float(psnr(a, a)))
    batch = torch.cat([a, b])
    assert torch.allclose(ssim(batch, a), torch.tensor([1.0, 0.7417736506954922], dtype=torch.float64), atol=1e-9)
    s = summary(torch.tensor([1.0, 3.0, math.inf]))
    assert s["mean"] == 2.0 and s["se"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        ssim(a, torch.zeros(1, 1, 27, 27))


def test_systematic_resampling_keeps_each_particle_in_proportion() -> None:
    logw = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64))
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    idx = systematic_resample(logw.expand(20000, -1), u)
    counts = torch.bincount(idx.flatten(), minlength=4)
    # systematic resampling gives every particle floor(K w) or ceil(K w) copies
    per_row = torch.stack([(idx == k).sum(1) for k in range(4)], 1).double()
    assert bool(((per_row - 4 * torch.exp(logw)).abs() < 1).all())
    assert stats.chisquare(counts.tolist(), [80000 * p for p in (0.1, 0.2, 0.3, 0.4)]).pvalue > 1e-3
