"""The RADD examples run (small settings)."""

from __future__ import annotations

from tests.api.fixtures import tiny_radd
from tests.examples.runner import run_example as _run


def test_radd_exact_joint_example(capsys) -> None:
    out = _run("examples/radd_exact_joint.py", ["--samples", "2000"], capsys)
    assert "any-order, one position per step" in out and "same samples: False" not in out
    assert out.count("same samples: True") == 12


def test_radd_text_example(tmp_path, capsys) -> None:
    model = tiny_radd(tmp_path / "radd-tiny")
    out = _run("examples/radd_text.py", ["--model", str(model), "--steps", "16", "--length", "10", "--samples", "1",
                                         "--infill", "The ____ sat on the mat ."], capsys)
    assert "cache=False" in out and "cache=True" in out and "sat on the mat ." in out
