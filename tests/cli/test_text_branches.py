"""`decoding text` / `decoding generate` reach every text decoder: RADD, ASSD, grammar-constrained and grammar-aligned."""

from __future__ import annotations

import json

from decoding.cli.main import main
from decoding.grammar import compile_grammar  # noqa: F401  (import check: the CLI needs it)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_radd_infill_keeps_the_template_and_cache_is_exact(tmp_path):
    outs = []
    for extra in ([], ["--no-cache"]):
        out = tmp_path / f"radd{len(extra)}.jsonl"
        argv = ["text", "--model", "models/radd-brown", "--steps", "16", "--infill", "The ____ sat on the mat.",
                "--n", "2", "--quiet", "--out", str(out), *extra]
        assert main(argv) == 0
        outs.append(_rows(out))
    assert [r["text"] for r in outs[0]] == [r["text"] for r in outs[1]]
    assert all(r["text"].startswith("The") and r["text"].endswith("sat on the mat.") for r in outs[0])
    assert sum(r["nfe"] for r in outs[0]) <= sum(r["nfe"] for r in outs[1])


def test_assd_infill_uses_at_most_one_call_per_token(tmp_path):
    out = tmp_path / "assd.jsonl"
    assert main(["text", "--model", "models/as-arm-brown", "--assd-k", "4", "--infill", "It was a ________ day.",
                 "--n", "2", "--quiet", "--out", str(out)]) == 0
    for r in _rows(out):
        assert r["nfe"] <= r["settings"]["blank_count"] and r["text"].startswith("It was a") and r["text"].endswith("day.")


def test_grammar_and_aligned_outputs_are_in_the_language(tmp_path):
    allowed = {"00000"} | {"1" + format(i, "04b") for i in range(16)}
    out = tmp_path / "g.jsonl"
    assert main(["text", "--grammar", "binary", "--prompt", "bits:", "--no-chat", "--n", "3", "--max-new-tokens", "8",
                 "--quiet", "--out", str(out)]) == 0
    assert all(r["text"] in allowed for r in _rows(out) if r["finish_reason"] == "eos")
    out2 = tmp_path / "a.jsonl"
    trie = tmp_path / "trie.safetensors"
    assert main(["text", "--grammar", "binary", "--aligned", "--trie", str(trie), "--prompt", "bits:", "--no-chat",
                 "--n", "3", "--max-new-tokens", "8", "--quiet", "--out", str(out2)]) == 0
    assert trie.is_file()
    assert all(r["text"] in allowed for r in _rows(out2) if r["finish_reason"] == "eos")


def test_grammar_json_samples_all_parse_inside_a_small_budget(tmp_path):
    out = tmp_path / "j.jsonl"
    assert main(["text", "--grammar", "json", "--prompt", "Describe a cat as JSON.", "--n", "3",
                 "--max-new-tokens", "10", "--quiet", "--out", str(out)]) == 0
    rows = _rows(out)
    assert len(rows) == 3
    for r in rows:
        assert r["finish_reason"] == "eos" and len(r["tokens"]) <= 10, r
        json.loads(r["text"])
    off = tmp_path / "off.jsonl"
    assert main(["text", "--grammar", "json", "--prompt", "Describe a cat as JSON.", "--n", "3",
                 "--max-new-tokens", "10", "--quiet", "--out", str(off), "--no-budget-close"]) == 0
    assert not any(r["budget_limited"] for r in _rows(off))


def test_generate_json_schema_samples_validate(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
                                  "additionalProperties": False}))
    out = tmp_path / "js.jsonl"
    assert main(["generate", "smollm2", "Give a number as JSON.", "--json-schema", str(schema), "--n", "2",
                 "--max-new-tokens", "16", "--quiet", "--out", str(out)]) == 0
    for r in _rows(out):
        assert r["finish_reason"] == "eos" and isinstance(json.loads(r["text"])["n"], int), r


def test_streamed_text_stops_before_the_stop_string_and_equals_generate(tiny_llama_dir, capsys):
    """The streamed row 0 never shows any part of a stop string it ends at (the stream held back only
    len(stop) - 1 characters, so a complete stop string's head was printed and could not be taken back)."""
    import decoding as dc

    lm = dc.load(str(tiny_llama_dir), device="cpu")
    greedy = dc.Sampling(greedy=True)
    free = dc.generate(lm, "Hello", max_new_tokens=12, sampling=greedy, chat=False)
    for stop in (lm.decode(free.tokens[0][3:5]), lm.decode(free.tokens[0][4:6])):
        want = dc.generate(lm, "Hello", max_new_tokens=12, sampling=greedy, chat=False, stop=[stop])
        assert main(["generate", str(tiny_llama_dir), "Hello", "--greedy", "--no-chat", "--max-new-tokens", "12",
                     "--stop", stop]) == 0
        assert capsys.readouterr().out == want.text[0] + "\n"
    assert main(["generate", str(tiny_llama_dir), "x", "--json-schema", "true", "--max-new-tokens", "4", "--quiet"]) == 0


def test_empty_prompts_file_and_text_out_suffix_are_refused(tmp_path, capsys):
    blank = tmp_path / "p.txt"
    blank.write_text("\n\n")
    assert main(["generate", "models/radd-brown", "--prompts-file", str(blank), "--steps", "2"]) == 2
    assert "holds no prompt" in capsys.readouterr().err
    assert main(["generate", "models/radd-brown", "a ____ b", "--steps", "2", "--out", str(tmp_path / "x.png")]) == 2
    assert "ending in .jsonl" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
