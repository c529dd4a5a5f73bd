"""The eval examples run (small settings)."""

from __future__ import annotations

from tests.examples.runner import run_example as _run


def test_eval_suite_example(tmp_path, capsys):
    out = _run(
        "examples/eval_suite.py", ["--out", str(tmp_path / "q"), "--only", "assd", "--limit", "100"], capsys
    )
    assert "assd (assd on markov):" in out and "k=4" in out and (tmp_path / "q" / "report.md").is_file()


def test_eval_exact_kl_example(capsys):
    out = _run("examples/eval_exact_kl.py", ["--samples", "3000"], capsys)
    assert out.count("-> exact") == 3, out


def test_eval_diffusion_classifier_example(capsys):
    out = _run("examples/eval_diffusion_classifier.py", ["--images", "20", "--samples", "4"], capsys)
    assert "n =    4 noise samples: accuracy" in out and "first image" in out
