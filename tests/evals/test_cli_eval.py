"""``decoding eval``: the command line, its errors (exit status 2, one line) and resuming."""

from __future__ import annotations

import json

from decoding.cli.main import main

SUITE = """
name = "cli"
[[task]]
name = "m"
model = "markov"
decoder = "autoregressive"
samples = 6
batch = 3
metrics = ["distinct_n"]
settings = { max_new_tokens = 3 }
"""


def test_runs_and_resumes(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    assert main(["eval", str(suite), "--out", str(out), "--no-progress"]) == 0
    assert "6 samples in 1 task(s)" in capsys.readouterr().out
    first = (out / "results.jsonl").read_text()
    assert main(["eval", str(suite), "--out", str(out), "--no-progress"]) == 0
    assert (out / "results.jsonl").read_text() == first  # nothing left to draw: the same records
    assert json.loads((out / "summary.json").read_text())["tasks"][0]["configs"][0]["samples"] == 6
    assert (out / "report.md").is_file() and (out / "suite.toml").read_text() == SUITE


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.replace("samples = 6", "samples = 6 6"))
    assert main(["eval", str(suite), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("decoding eval: error: ") and "malformed TOML" in err and "line 7" in err
    suite.write_text(SUITE.replace('decoder = "autoregressive"', 'decoder = "nucleus"'))
    assert main(["eval", str(suite), "--out", str(tmp_path / "o")]) == 2
    assert (
        "unknown text decoder 'nucleus'; available: aligned, assd, autoregressive, radd"
        in capsys.readouterr().err
    )
    assert main(["eval", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", str(suite)]) == 2
    assert not (tmp_path / "o").exists()


def test_list_names(capsys):
    assert main(["eval", "--list"]) == 0
    out = capsys.readouterr().out
    assert (
        "kind text: models: lm, markov, tiny-transformer" in out
        and "diffusion_classifier" in out
        and "kl_exact" in out
    )
