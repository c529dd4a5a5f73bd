"""The JSON validity benchmark runs end to end at toy size (SmolLM2, 2 samples, 12 tokens)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def test_grammar_validity_benchmark_quick(tmp_path) -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "grammar_validity.py"
    spec = importlib.util.spec_from_file_location("grammar_validity_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "v.json"
    res = bench.main(["--quick", "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text())["total"] == res["total"]
    assert res["total"]["guard"] == {**res["total"]["guard"], "parse": 2, "samples": 2}
    guarded = [r for r in res["rows"] if r["side"] == "guard"]
    assert guarded and all(r["finish"] == {"eos": r["samples"]} for r in guarded)
