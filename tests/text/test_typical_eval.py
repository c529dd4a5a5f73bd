"""The typical-sampling eval script: its metrics on hand-made token lists, and a two-prompt smoke run."""

from __future__ import annotations

import json
import math

import pytest

from tests.examples.runner import load_script


@pytest.fixture(scope="module")
def ev():
    return load_script("evals/reports/typical/run.py", "typical_eval")


def test_repetition_and_distinct_by_hand(ev) -> None:
    assert ev.seq_rep([1, 2, 3, 4, 5], 4) == 0.0
    assert ev.seq_rep([1, 2, 1, 2, 1, 2, 1], 4) == pytest.approx(1 - 2 / 4)  # 4-grams: 1212, 2121, 1212, 2121
    assert ev.seq_rep([1, 2, 3], 4) is None
    assert ev.distinct([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(3 / 4)
    assert ev.distinct([[7, 7, 7]], 1) == pytest.approx(1 / 3)


def test_smoke_run(ev, tmp_path, smollm2_folder) -> None:
    out = ev.main(["--limit", "2", "--max-new-tokens", "4", "--settings", "typical 0.2", "greedy (reference)",
                   "--out", str(tmp_path)])
    assert set(out) == {"typical 0.2", "greedy (reference)"}
    for r in out.values():
        assert 0 <= r["rep_4"] <= 1 and math.isfinite(r["ppl"]) and r["ppl"] >= 1
    assert out["greedy (reference)"]["ppl"] <= out["typical 0.2"]["ppl"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta"]["prompts"] == 2
    assert (tmp_path / "report.png").stat().st_size > 0 and "seq-rep-4" in (tmp_path / "report.md").read_text()
