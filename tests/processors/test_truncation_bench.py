"""The truncation speed benchmark runs end to end at toy size (the GPU run uses the same code paths)."""

from __future__ import annotations

import json

from tests.examples.runner import load_script


def test_truncation_benchmark_tiny(tmp_path) -> None:
    bench = load_script("benchmarks/truncation.py", "truncation_bench")
    out = tmp_path / "r.json"
    res = bench.main(["--device", "cpu", "--batch", "2", "--vocab", "300", "--iters", "2", "--reps", "1",
                      "--no-compile", "--out", str(out)])
    saved = json.loads(out.read_text())
    names = {(r["processor"], r["method"]) for r in saved["rows"]}
    assert {("top_p", "search"), ("top_p", "sort"), ("typical", "search"), ("min_p", "topk-free")} <= names
    assert all(r["us"] > 0 for r in res["rows"])
