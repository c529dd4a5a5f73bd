"""The Distilled Decoding example runs."""

from __future__ import annotations

import re

from tests.examples.runner import run_example as _run


def test_dd_exact_joint_example(capsys) -> None:  # noqa: ANN001
    out = _run("examples/dd_exact_joint.py", ["--samples", "4000"], capsys)
    floor = float(re.search(r"noise floor\): ([0-9.]+)", out).group(1))
    flow64 = float(re.search(r"64 ODE steps per token: TV ([0-9.]+)", out).group(1))
    naive = float(re.search(r"from its marginal: +TV ([0-9.]+)", out).group(1))
    assert out.count("same tokens: True") == 3 and flow64 < 2 * floor + 0.02 < naive
