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
    assert saved["complete"]


def test_a_failing_row_is_reported_and_the_run_goes_on(tmp_path, monkeypatch) -> None:
    """A form that fails (inductor crashed compiling the search at batch 8 on the first H100 run)
    prints its error, is saved with it, and the other rows still run and are saved."""
    bench = load_script("benchmarks/truncation.py", "truncation_bench_fail")
    timed = bench.time_us

    def time_us(fn, x, *a):
        if fn is fns[("typical", "search")]:
            raise RuntimeError("codegen failed " + "x" * 1000 + " the useful end")
        return timed(fn, x, *a)

    fns = bench.callables()
    monkeypatch.setattr(bench, "callables", lambda: fns)
    monkeypatch.setattr(bench, "time_us", time_us)
    out = tmp_path / "r.json"
    res = bench.main(["--device", "cpu", "--batch", "2", "--vocab", "300", "--iters", "2", "--reps", "1",
                      "--no-compile", "--out", str(out)])
    failed = [r for r in res["rows"] if r.get("error")]
    assert len(failed) == 1 and failed[0]["us"] is None and failed[0]["error"].endswith("the useful end")
    saved = json.loads(out.read_text())
    assert saved["complete"] and len(saved["rows"]) == len(res["rows"]) >= 5


def test_kernel_rows_skipped_with_the_reason_without_cuda(tmp_path, capsys) -> None:
    """On CPU (no ``TRITON_INTERPRET``) the top-p kernel rows are skipped, the reason printed and saved."""
    import os

    if os.environ.get("TRITON_INTERPRET") == "1":
        import pytest

        pytest.skip("TRITON_INTERPRET=1: the kernel runs on CPU tensors")
    bench = load_script("benchmarks/truncation.py", "truncation_bench_kernel")
    out = tmp_path / "r.json"
    bench.main(["--device", "cpu", "--batch", "1", "--vocab", "200", "--iters", "1", "--reps", "1",
                "--no-compile", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert "top_p kernel rows skipped: " + saved["kernel_skipped"] in capsys.readouterr().out
    assert not any(r["method"] == "kernel" for r in saved["rows"])


def test_methods_and_modes_filter_the_timed_rows(tmp_path) -> None:
    """``--methods`` / ``--modes`` time only what was asked (the GPU call's cap went on the slow eager rows)."""
    bench = load_script("benchmarks/truncation.py", "truncation_bench_filter")
    res = bench.main(["--device", "cpu", "--batch", "2", "--vocab", "300", "--iters", "1", "--reps", "1",
                      "--no-compile", "--methods", "sort", "--modes", "eager"])
    assert {(r["processor"], r["method"], r["mode"]) for r in res["rows"]} == {
        ("top_p", "sort", "eager"), ("typical", "sort", "eager")}
