"""The grammar example runs (a seeded random model over SmolLM2's vocabulary, small settings)."""

from __future__ import annotations

import json
import runpy
import sys

from decoding.grammar import compile_grammar
from decoding.tokenizers import Vocabulary


def _run(args: list[str]) -> list[str]:
    old = sys.argv
    sys.argv = ["examples/grammar_json.py", *args]
    try:
        mod = runpy.run_path("examples/grammar_json.py", run_name="grammar_example")
        return mod["main"](args)
    finally:
        sys.argv = old


def test_grammar_example_json_stays_in_the_grammar(capsys) -> None:  # noqa: ANN001
    bytes_vocab = Vocabulary(tuple(bytes([b]) for b in range(256)) + (None,), 256)
    g = compile_grammar("json", bytes_vocab, warm_seconds=0)
    texts = _run(["--model", "random", "--samples", "2", "--max-tokens", "12", "--no-budget"])
    out = capsys.readouterr().out
    assert out.count("[0]") == 1 and out.count("[1]") == 1
    for text in texts:  # without the budget guard every sample is still a viable JSON prefix
        g.matcher().accept_bytes(text.encode())
    texts = _run(["--model", "random", "--samples", "3", "--max-tokens", "12"])
    assert "3 of 3 samples complete" in capsys.readouterr().out  # with it, all finish in 12 tokens and parse
    for text in texts:
        json.loads(text)


def test_grammar_example_binary_completes(capsys) -> None:  # noqa: ANN001
    texts = _run(["--model", "random", "--grammar", "binary", "--samples", "3", "--max-tokens", "8"])
    assert all(t == "00000" or (len(t) == 5 and t[0] == "1" and set(t) <= {"0", "1"}) for t in texts), texts
    assert capsys.readouterr().out.count("complete:") == 3
