"""The Distilled Decoding example runs."""

from __future__ import annotations

import re

import pytest

from decoding.api.zoo import models_root
from tests.examples.runner import run_example as _run


def test_dd_exact_joint_example(capsys) -> None:  # noqa: ANN001
    out = _run("examples/dd_exact_joint.py", ["--samples", "4000"], capsys)
    floor = float(re.search(r"noise floor\): ([0-9.]+)", out).group(1))
    flow64 = float(re.search(r"64 ODE steps per token: TV ([0-9.]+)", out).group(1))
    naive = float(re.search(r"from its marginal: +TV ([0-9.]+)", out).group(1))
    assert out.count("same tokens: True") == 3 and flow64 < 2 * floor + 0.02 < naive


@pytest.mark.skipif(not (models_root() / "fashion-ar-dd" / "model.safetensors").is_file(),
                    reason="models/fashion-ar-dd is not shipped")
def test_image_dd_example(tmp_path, capsys) -> None:  # noqa: ANN001
    """The shipped teacher and student: 98 calls against 1 and 2, and a grid of three rows of ten."""
    out = _run("examples/image_dd.py", ["--device", "cpu", "--out", str(tmp_path / "dd.png")], capsys)
    nfe = [int(m) for m in re.findall(r"NFE +(\d+)", out)]
    assert nfe == [98, 1, 2], out
    from PIL import Image

    assert Image.open(tmp_path / "dd.png").size == ((10 * 30 + 2) * 2, (3 * 30 + 2) * 2)  # 28-px tiles, 2-px gaps, x2
