"""The speed benchmark runs end to end at toy size (the GPU run uses the same code paths)."""

from __future__ import annotations

import json

import pytest

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
    assert saved["profile"]["2"]["wall_ms_per_token_step"] > 0  # (the device busy fraction: CUDA only)
    assert saved["complete"]


def test_top_p_method_reaches_our_engines_only() -> None:
    """``--top-p-method`` sets TopP's method in our engines' processors (HF keeps its own warpers)."""
    from decoding.processors import Temperature, TopP

    bench = load_script("benchmarks/text_generate.py", "text_generate_bench_topp")
    procs = bench.our_processors({"temperature": 0.8, "top_p": 0.95}, "search")
    assert [type(p) for p in procs] == [Temperature, TopP] and procs[1].method == "search" and procs[1].p == 0.95
    assert bench.our_processors({"top_p": 0.9})[0].method == "auto"
    with pytest.raises(SystemExit):  # argparse's choices: a misspelt method is refused before any work
        bench.main(["--device", "cpu", "--random-weights", "--tiny", "--top-p-method", "kernels"])


def test_processors_graph_switch_is_set_and_recorded(tmp_path, monkeypatch) -> None:
    import decoding.processors.graphed as graphed

    monkeypatch.setattr(graphed, "ENABLED", True)
    bench = load_script("benchmarks/text_generate.py", "text_generate_bench_graph")
    res = bench.main(["--device", "cpu", "--random-weights", "--tiny", "--batch", "1", "--new-tokens", "3",
                      "--reps", "1", "--skip-hf", "--engines", "loop", "--processors-graph", "off",
                      "--out", str(tmp_path / "r.json")])
    assert res["meta"]["processors_graph"] == "off" and not graphed.ENABLED


def test_each_engine_is_saved_as_it_finishes_and_capped(tmp_path, monkeypatch) -> None:
    """``--out`` holds every finished row while the run goes on; ``--engine-timeout`` stops an engine
    (the first GPU run lost whole batches to an outside timeout: results were written at the end)."""
    bench = load_script("benchmarks/text_generate.py", "text_generate_bench_cap")
    out = tmp_path / "r.json"
    seen: list[list[str]] = []
    measure_one = bench.measure_one

    def spy(fn, reps, device, cap):
        if out.exists():
            saved = json.loads(out.read_text())
            seen.append([name for run in saved["runs"] for name in run["engines"]])
        if seen:  # the second engine hangs: the cap stops it
            return measure_one(lambda seed: __import__("time").sleep(30) or 0, reps, device, cap)
        return measure_one(fn, reps, device, cap)

    monkeypatch.setattr(bench, "measure_one", spy)
    res = bench.main(["--device", "cpu", "--random-weights", "--tiny", "--batch", "2", "--new-tokens", "4",
                      "--reps", "1", "--engines", "loop-eager,loop-eager-sync1", "--skip-hf", "--engine-timeout", "3",
                      "--out", str(out)])
    assert seen == [["loop-eager"]]  # before the second engine, the first one's row was on disk
    rows = res["runs"][0]["engines"]
    assert rows["loop-eager"]["error"] is None
    assert rows["loop-eager-sync1"]["capped"] and "EngineTimeout" in rows["loop-eager-sync1"]["error"]
    assert rows["loop-eager-sync1"]["seconds"] < 10
    saved = json.loads(out.read_text())
    assert saved["complete"] and saved["runs"][0]["engines"]["loop-eager-sync1"]["capped"]


def test_loop_ops_counts_only_the_ops_outside_the_model() -> None:
    """Top-p adds its ops to a temperature-only step; the model's own ops are not counted (a step of
    a one-layer transformer alone dispatches far more than the loop's few dozen)."""
    bench = load_script("benchmarks/loop_ops.py", "loop_ops_bench")
    res = bench.main(["--vocab", "512", "--steps", "8", "--time-steps", "8", "--configs", "temperature=1.0",
                      "temperature=0.8,top_p=0.95"])
    plain, top_p = res["temperature=1.0"]["ops_per_step"], res["temperature=0.8,top_p=0.95"]["ops_per_step"]
    assert 10 < plain < top_p < 100, (plain, top_p)
    assert all(r["host_us_per_step"] > 0 for r in res.values())


def test_loop_auto_is_the_engine_decoding_load_builds() -> None:
    """``loop-auto`` is ``StaticCausalLM(fused="auto")`` (the default engine of ``decoding.load``); plain ``loop``
    never fuses, so a row named ``loop`` is not the default engine's speed."""
    import argparse

    from decoding.nn.transformer import Transformer, TransformerConfig

    bench = load_script("benchmarks/text_generate.py", "text_generate_bench_auto")
    net = Transformer(TransformerConfig(**bench.TINY, max_len=64)).eval()
    args = argparse.Namespace(engines=["loop-auto", "loop"], attention="auto", compile="auto", cuda_graphs="auto",
                              compile_mode=None, prompt_len=8, new_tokens=4)
    models = bench.ours(args, net)
    assert models["loop-auto"][1].fused_auto and not models["loop"][1].fused_auto
    with pytest.raises(SystemExit, match="-auto"):
        bench.ours(argparse.Namespace(**{**vars(args), "engines": ["loop-fast"]}), net)
