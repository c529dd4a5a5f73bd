"""The evaluation scripts run at toy size on the CPU and write what the GPU run will hand back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.control.fixtures import tiny_model_folder
from tests.examples.runner import load_script

HAVE_DATA = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:  # noqa: ANN001
    return tiny_model_folder(tmp_path_factory.mktemp("zoo") / "fashion-tiny")


def test_reward_comparison_at_toy_size(tiny_folder: Path, tmp_path: Path) -> None:
    bench = load_script("benchmarks/control_reward.py")
    assert bench.main(["--model", str(tiny_folder), "--toy", "--out-dir", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["method"], r["budget"]): r for r in meta["rows"]}
    assert set(rows) == {("plain", 2)} | {(m, b) for m in ("dts", "dts*", "bon", "smc", "grad") for b in (2, 4)}
    assert rows[("bon", 4)]["nfe"] == 4.0 and rows[("smc", 4)]["nfe"] == 4.0 and rows[("dts", 4)]["nfe"] <= 4.0
    data = np.load(tmp_path / "dtsstar_nfe4.npz")
    assert data["images"].dtype == np.uint8 and data["images"].shape == (4, 1, 28, 28) and (data["labels"] == 7).all()
    assert (tmp_path / "curve.png").is_file() and "| dts* | 4 |" in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit, match="multiples"):
        bench.main(["--model", str(tiny_folder), "--steps", "3", "--budgets", "4", "--out-dir", str(tmp_path)])


@pytest.mark.skipif(not HAVE_DATA, reason="Fashion-MNIST is not installed")
def test_restoration_tables_at_toy_size(tiny_folder: Path, tmp_path: Path) -> None:
    bench = load_script("benchmarks/control_restore.py")
    assert bench.main(["--model", str(tiny_folder), "--toy", "--out-dir", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "results.json").read_text())
    got = {(r["task"], r["method"]) for r in meta["rows"]}
    assert got == {(t, m) for t in ("box", "random", "sr4", "deblur") for m in ("steer", "replace", "dps")} - {("deblur", "replace")}
    box = {r["method"]: r for r in meta["rows"] if r["task"] == "box"}
    assert box["replace"]["obs_rmse"]["mean"] < 1e-3  # replacement keeps the known pixels
    assert all(np.load(tmp_path / f"{t}_steer.npz")["images"].shape == (4, 1, 28, 28) for t in ("box", "sr4"))
    for t in ("box", "random", "sr4", "deblur"):
        assert (tmp_path / f"{t}.png").is_file()
