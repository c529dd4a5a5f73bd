"""The speed benchmark runs end to end at toy size (the GPU run uses the same code paths)."""

from __future__ import annotations

import json

from tests.examples.runner import load_script


def test_text_benchmark_tiny(tmp_path) -> None:
    bench = load_script("benchmarks/text_generate.py", "text_generate_bench")
    out = tmp_path / "r.json"
    res = bench.main(["--device", "cpu", "--random-weights", "--tiny", "--batch", "2", "--new-tokens", "6",
                      "--reps", "1", "--engines", "loop,loop-eager-sync1,hf,hf-adapter", "--configs",
                      "temperature=0.8,top_p=0.95", "typical=0.9", "--profile", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["meta"]["new_tokens"] == 6 and len(saved["runs"]) == 2
    for run in res["runs"]:
        for name, row in run["engines"].items():
            assert row["error"] is None, (name, row["error"])
            assert row["median_tok_s"] > 0
        assert run["engines"]["hf"]["ratio_to_hf_best"] == 1.0
    assert "2" in saved["profile"]
