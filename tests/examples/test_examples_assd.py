"""The ASSD examples run (small settings)."""

from __future__ import annotations

from pathlib import Path

from tests.any_subset.tiny import tiny_model
from tests.examples.runner import run_example as _run

ROOT = Path(__file__).resolve().parents[2]


def test_assd_exact_joint_example(capsys):
    out = _run("examples/assd_exact_joint.py", ["--samples", "500"], capsys)
    assert "ASSD k=4" in out and "max 4 <= 4" in out


def test_assd_infill_example(tmp_path, capsys):
    model = tiny_model(tmp_path / "as-arm-tiny")
    out = _run("examples/assd_infill.py", ["--model", str(model), "--samples", "2", "--template", "The ____ sat on the ___ ."], capsys)
    assert "ASSD k=4" in out and "sequential" in out and out.count("The") >= 4
