"""The report draws the plots a suite declares, and says so when one cannot be drawn (never drops it silently)."""

from __future__ import annotations

from pathlib import Path

import pytest

from decoding.evals.report import write_report
from decoding.evals.suite import parse_suite

SUITE = """
name = "s"
[[task]]
name = "a"
model = "markov"
decoder = "autoregressive"
samples = 4
metrics = ["distinct_n"]
sweep = { temperature = [0.5, 1.0] }
[[task.plots]]
x = "temperature"
y = "distinct_2"
[[task.plots]]
x = "temperature"
y = "fid"
"""


def summary() -> dict:
    configs = [{"label": f"temperature={t}", "settings": {"temperature": t}, "samples": 4, "seconds": 1.0, "nfe": 3.0,
                "distinct_2": d} for t, d in ((0.5, 0.4), (1.0, 0.7))]
    task = {"name": "a", "kind": "text", "model": "markov", "decoder": "autoregressive", "metrics": ["distinct_n"],
            "description": "", "configs": configs}
    return {"suite": "s", "device": "cpu", "world_size": 1, "torch": "x", "seed": 0, "tasks": [task]}


def test_a_declared_plot_without_numbers_is_named_in_the_report(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Plot fid vs temperature of task a is not drawn"):
        report = write_report(tmp_path, summary(), parse_suite(SUITE)).read_text()
    assert "(plots/a-distinct_2-vs-temperature.png)" in report and (tmp_path / "plots/a-distinct_2-vs-temperature.png").is_file()
    assert "Plot fid vs temperature of task a is not drawn" in report and "distinct_2" in report
    assert not (tmp_path / "plots/a-fid-vs-temperature.png").exists()


@pytest.mark.parametrize(("line", "message"), [('logx = "maybe"', "plot logx must be true or false"),
                                               ("title = 3", "plot title must be a string")])
def test_plot_options_of_the_wrong_type_are_refused(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_suite(SUITE.replace('y = "fid"', f'y = "fid"\n{line}'))
