"""``decoding text`` end to end: streaming, JSONL output, prompt files, one-line errors."""

from __future__ import annotations

import json

import pytest

from decoding.cli.main import main


def test_streams_one_sample_and_writes_jsonl(tiny_llama_dir, tmp_path, capsys) -> None:
    out = tmp_path / "s.jsonl"
    rc = main(["text", "--model", str(tiny_llama_dir), "--prompt", "Hello", "--max-new-tokens", "5", "--typical", "0.9",
               "--temperature", "0.8", "--seed", "1", "--out", str(out)])
    assert rc == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert 1 <= len(row["tokens"]) <= 5 and row["nfe"] == len(row["tokens"])
    assert row["settings"]["sampling"] == {"temperature": 0.8, "typical": 0.9} and row["settings"]["engine"] == "native"
    assert row["settings"]["seconds"] > 0 and row["settings"]["seed"] == 1
    printed = capsys.readouterr()
    assert row["text"] in printed.out
    assert "tok/s" in printed.err


def test_prompts_file_and_several_samples(tiny_llama_dir, tmp_path, capsys) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "one"}\n\n{"prompt": "two"}\n')
    out = tmp_path / "s.jsonl"
    rc = main(["text", "--model", str(tiny_llama_dir), "--prompts-file", str(prompts), "--n", "2", "--no-chat",
               "--max-new-tokens", "3", "--top-k", "40", "--out", str(out)])
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["index"], r["prompt_index"]) for r in rows] == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert capsys.readouterr().out.count("=== sample") == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--typical", "1.5"], "typical mass) must lie in (0, 1)"),
        (["--temperature", "-1"], "temperature must be > 0"),
        (["--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
        (["--model", "/nonexistent/model"], "no model '/nonexistent/model'"),
        (["--max-new-tokens", "500"], "exceeds the context"),
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_llama_dir, capsys, args, message) -> None:
    base = ["text", "--model", str(tiny_llama_dir), "--prompt", "hi"]
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("decoding text: error:")


def test_no_prompt_is_a_usage_error(capsys) -> None:
    assert main(["text"]) == 2
    assert "give a prompt" in capsys.readouterr().err


def test_embedded_smollm2(smollm2_folder, capsys) -> None:
    rc = main(["text", "--prompt", "What is the capital of France?", "--max-new-tokens", "6", "--greedy"])
    assert rc == 0
    assert "Paris" in capsys.readouterr().out
