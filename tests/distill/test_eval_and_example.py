"""The evaluation script and the example at toy size (tiny teacher and students, a few CPU samples)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from decoding.evals.distill import main as eval_main
from decoding.evals.fid import score_samples
from tests.distill.conftest import Students
from tests.examples.runner import run_example

pytestmark = pytest.mark.one_thread


def test_eval_rows_npz_and_table(students: Students, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out, npz = tmp_path / "eval.json", tmp_path / "npz"
    args = ["--teacher", str(students.teacher), "--students", str(students.stage1), str(students.steps2), str(students.steps1),
            "--n", "6", "--batch-size", "3", "--teacher-steps", "3", "--baseline-steps", "2", "--scales", "1.5", "2",
            "--device", "cpu", "--no-fid", "--npz-dir", str(npz), "--out", str(out)]
    assert eval_main(args) == 0
    rows = json.loads(out.read_text())["results"]
    got = [(r["label"], r["sampler"], r["nfe"], r["scale"]) for r in rows]
    assert got == [
        ("teacher CFG 1.5", "dpmpp_2m 3 steps", 6.0, 1.5),
        ("teacher CFG 1.5, 2 steps", "dpmpp_2m 2 steps", 4.0, 1.5),
        ("stage1 (stage 1)", "dpmpp_2m 3 steps", 3.0, 1.5),
        ("teacher CFG 2", "dpmpp_2m 3 steps", 6.0, 2.0),
        ("stage1 (stage 1)", "dpmpp_2m 3 steps", 3.0, 2.0),
        ("steps-2 (2 steps)", "deterministic", 2.0, 1.5),
        ("steps-2 (2 steps)", "stochastic", 2.0, 1.5),
        ("steps-1 (1 step)", "deterministic", 1.0, 1.5),
    ]
    assert all(0 <= r["class_accuracy"] <= 1 and r["images_per_second"] > 0 and "fid" not in r for r in rows)
    for r in rows:
        data = np.load(r["npz"])
        assert data["images"].dtype == np.uint8 and data["images"].shape == (6, 1, 28, 28)
        assert data["labels"].tolist() == [0, 1, 2, 3, 4, 5]
    text = capsys.readouterr().out
    assert "| steps-1 (1 step) | deterministic | 1 |" in text and "speed-up" in text


def test_eval_fid_equals_the_npz_route(students: Students, tmp_path: Path) -> None:
    """FID computed in the run equals `python -m decoding.evals.fid samples` on the saved .npz (same uint8 images)."""
    out, npz = tmp_path / "eval.json", tmp_path / "npz"
    assert eval_main(["--teacher", str(students.teacher), "--n", "4", "--batch-size", "4", "--teacher-steps", "2",
                      "--baseline-steps", "--device", "cpu", "--no-classifier", "--npz-dir", str(npz), "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert np.isfinite(row["fid"])
    assert abs(score_samples(row["npz"], classifier=None)["fid"] - row["fid"]) < 1e-6 * max(1.0, row["fid"])


def test_example_rows(students: Students, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    png = tmp_path / "d.png"
    text = run_example("examples/image_distill.py", ["--teacher", str(students.teacher), "--students", str(students.stage1),
                                                     str(students.steps1), "--steps", "2", "--device", "cpu", "--out", str(png)],
                       capsys)
    assert png.is_file() and "one row per model" in text
    nfe = [line.split("NFE")[1].split()[0] for line in text.splitlines() if "NFE" in line]
    assert nfe == ["4", "2", "1"]  # CFG: 2 calls per step; the stage-1 student: 1; the 1-step student: 1 in all


def test_eval_one_step_baseline(students: Students, tmp_path: Path) -> None:
    """``--baseline-steps ... 1`` (the GPU plan's) runs: the 1-step CFG baseline is DDIM (DPM-Solver++(2M) refuses 1 step)."""
    out = tmp_path / "eval.json"
    assert eval_main(["--teacher", str(students.teacher), "--students", str(students.steps1), "--n", "2", "--batch-size", "2",
                      "--teacher-steps", "2", "--baseline-steps", "2", "1", "--device", "cpu", "--no-fid", "--no-classifier",
                      "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["sampler"], r["nfe"]) for r in rows] == [("dpmpp_2m 2 steps", 4.0), ("dpmpp_2m 2 steps", 4.0),
                                                       ("ddim 1 steps", 2.0), ("deterministic", 1.0)]
