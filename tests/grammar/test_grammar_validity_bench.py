"""The JSON validity benchmark runs end to end at toy size (SmolLM2, 2 samples, 12 tokens)."""

from __future__ import annotations

import json

from tests.examples.runner import load_script


def test_grammar_validity_benchmark_quick(tmp_path) -> None:
    bench = load_script("benchmarks/grammar_validity.py", "grammar_validity_bench")
    out = tmp_path / "v.json"
    res = bench.main(["--quick", "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text())["total"] == res["total"]
    assert res["total"]["guard"] == {**res["total"]["guard"], "parse": 2, "samples": 2}
    guarded = [r for r in res["rows"] if r["side"] == "guard"]
    assert guarded and all(r["finish"] == {"eos": r["samples"]} for r in guarded)
