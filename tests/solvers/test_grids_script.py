"""benchmarks/solver_grids.py: the paired comparison with each solver's default grid."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.solver_grids import main, paired_differences


def test_paired_differences_mean_and_standard_error():
    a = torch.tensor([0.30, 0.20, 0.25, 0.40])
    b = torch.tensor([0.10, 0.25, 0.20, 0.35])
    per_sample = {("time", 5): a, ("logsnr_trunc", 5): b, ("time", 6): a}
    d = a - b
    mean, se = paired_differences(per_sample, "time", "logsnr_trunc")[5]
    assert mean == pytest.approx(float(d.mean()), abs=1e-7)
    assert se == pytest.approx(math.sqrt(float(((d - d.mean()) ** 2).sum()) / 3 / 4), abs=1e-7)
    assert 6 not in paired_differences(per_sample, "time", "logsnr_trunc")  # base not run at NFE 6
    assert paired_differences(per_sample, "logsnr_trunc", "logsnr_trunc") == {}


def test_paired_mean_is_the_difference_of_the_two_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODING_CACHE", str(tmp_path))
    out = main(["--quick", "--only", "2M", "--lof", "on", "--spacing", "time", "logsnr_trunc"])
    rows = {r["spacing"]: r for r in out["results"]}
    assert rows["time"]["default"] == "logsnr_trunc" and rows["logsnr_trunc"]["paired"] == {}
    for n, (mean, se) in rows["time"]["paired"].items():
        assert mean == pytest.approx(rows["time"]["errors"][n] - rows["logsnr_trunc"]["errors"][n], abs=1e-9)
        assert se >= 0
