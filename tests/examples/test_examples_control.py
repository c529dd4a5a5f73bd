"""The inference-time control example runs (tiny model, few steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.control.fixtures import tiny_model_folder
from tests.examples.runner import run_example

HAVE_DATA = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file()


@pytest.mark.skipif(not HAVE_DATA, reason="Fashion-MNIST is not installed")
def test_control_steering_example(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    folder = tiny_model_folder(tmp_path / "fashion-tiny")
    out = tmp_path / "s.png"
    text = run_example("examples/control_steering.py", ["--model", str(folder), "--steps", "3", "--n", "2",
                                                        "--rollouts", "2", "--device", "cpu", "--out", str(out)], capsys)
    assert "inpaint  dps" in text and "DTS call 2: 8 rollouts" in text
    assert out.is_file() and (tmp_path / "s_dts.png").is_file()
