"""The runner: results files, resume without overwriting, sequential jobs, errors before sampling."""

from __future__ import annotations

import json

import pytest

from decoding.evals.runner import TIME_KEYS, run_suite
from decoding.evals.suite import load_suite

SUITE = """
name = "r"
seed = 5
[[task]]
name = "ar"
model = "markov"
decoder = "autoregressive"
samples = 24
batch = 8
metrics = ["kl_exact", "distinct_n", "nfe_per_token"]
model_args = { alphabet = "ab$", seed = 1 }
settings = { max_new_tokens = 4 }
sweep = { temperature = [0.7, 1.3] }

[[task]]
name = "aligned"
model = "markov"
decoder = "aligned"
samples = 12
batch = 4
metrics = ["kl_exact", "validity"]
model_args = { alphabet = "ab$", seed = 1 }
settings = { max_new_tokens = 4 }
data = { grammar_text = 'start: "a"+ "b"*' }
metric_args = { kl_exact = { condition = "grammar" } }
"""


def _suite(tmp_path, text=SUITE):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return load_suite(path)


def _lines(out) -> list[dict]:
    return [
        {k: v for k, v in json.loads(x).items() if k not in TIME_KEYS}
        for x in (out / "results.jsonl").read_text().splitlines()
    ]


def test_full_run_writes_every_file(tmp_path):
    out = tmp_path / "out"
    summary = run_suite(_suite(tmp_path), out, progress=False)
    lines = _lines(out)
    assert len(lines) == 2 * 24 + 12
    first = lines[0]
    assert (
        first["settings"] == {"max_new_tokens": 4, "temperature": 0.7}
        and first["nfe"] == first["output"]["n_tokens"]
    )
    assert {"task", "config", "index", "seed", "output", "metrics"} <= set(first)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    ar = summary["tasks"][0]["configs"]
    assert [c["label"] for c in ar] == ["temperature=0.7", "temperature=1.3"] and ar[0]["samples"] == 24
    report = (out / "report.md").read_text()
    assert "## ar" in report and "| temperature=0.7 |" in report
    assert (out / "plots" / "ar-distribution.png").stat().st_size > 1000
    assert (out / "plots" / "aligned-distribution.png").is_file()
    assert not list(out.rglob("*.tmp")), "no temporary files are left behind"
    # The configs of a task share their random numbers; different chunks do not.
    seeds = {(x["task"], x["config"], x["chunk"]): x["seed"] for x in lines}
    assert seeds[("ar", 0, 0)] == seeds[("ar", 1, 0)] != seeds[("ar", 0, 1)]


def test_resume_draws_only_what_is_missing_and_matches_a_fresh_run(tmp_path):
    suite = _suite(tmp_path)
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    run_suite(suite, fresh, progress=False, report=False)
    run_suite(suite, resumed, progress=False, report=False, limit=8)  # an interrupted run
    assert len(_lines(resumed)) == 2 * 8 + 8
    done = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (resumed / "chunks").rglob("*") if p.is_file()}
    run_suite(suite, resumed, progress=False, report=False)
    for p, (mtime, data) in done.items():
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data, f"{p} was rewritten"
    assert _lines(resumed) == _lines(fresh)  # the aligned decoder resumed from its stored trie


def test_resume_after_a_limit_inside_a_chunk_matches_a_fresh_run(tmp_path):
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    run_suite(_suite(tmp_path), fresh, progress=False, report=False)
    run_suite(_suite(tmp_path), resumed, progress=False, report=False, limit=3)  # chunk 0 cut short
    summary = run_suite(_suite(tmp_path), resumed, progress=False, report=False)
    assert [c["samples"] for t in summary["tasks"] for c in t["configs"]] == [24, 24, 12]
    assert _lines(resumed) == _lines(fresh)  # chunk 0 drawn again in full, not completed


def test_fewer_samples_into_the_same_folder_match_a_fresh_run(tmp_path):
    fewer = SUITE.replace("samples = 24", "samples = 20").replace("samples = 12", "samples = 10")
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    run_suite(_suite(tmp_path), out, progress=False, report=False)
    summary = run_suite(_suite(tmp_path, fewer), out, progress=False, report=False)
    run_suite(_suite(tmp_path, fewer), fresh, progress=False, report=False)
    assert [c["samples"] for t in summary["tasks"] for c in t["configs"]] == [20, 20, 10]
    assert _lines(out) == _lines(fresh)  # the last chunks of 20 and 10 samples, not the stored longer ones


def test_a_chunk_holding_other_samples_than_its_name_says_is_an_error(tmp_path):
    out = tmp_path / "out"
    run_suite(_suite(tmp_path), out, progress=False, report=False, only=["ar"])
    chunk = sorted((out / "chunks" / "ar").rglob("000000.json"))[0]
    data = json.loads(chunk.read_text())
    data["records"] = data["records"][:3]  # as stored by --limit 3 before chunk names held their size
    chunk.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"holds samples \[0, 1, 2\], not \[0, 1, .*, 7\]; delete it"):
        run_suite(_suite(tmp_path), out, progress=False, report=False, only=["ar"])


def test_finished_results_are_never_overwritten(tmp_path):
    suite = _suite(tmp_path)
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, report=False, only=["ar"])
    chunk = sorted((out / "chunks" / "ar").rglob("000000.json"))[0]
    data = json.loads(chunk.read_text())
    data["records"][0]["output"]["text"] = "kept"
    chunk.write_text(json.dumps(data))
    run_suite(suite, out, progress=False, report=False, only=["ar"])
    assert any(x["output"]["text"] == "kept" for x in _lines(out))


def test_errors_come_before_any_sample(tmp_path):
    out = tmp_path / "out"
    bad = SUITE.replace("sweep = { temperature = [0.7, 1.3] }", "sweep = { temperature = [0.7, -1.0] }")
    with pytest.raises(ValueError, match="task 'ar': temperature must be > 0"):
        run_suite(_suite(tmp_path, bad), out, progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match=r"--only names unknown task\(s\) \['nope'\]"):
        run_suite(_suite(tmp_path), out, progress=False, only=["nope"])
