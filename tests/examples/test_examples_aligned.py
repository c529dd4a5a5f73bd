"""The grammar-aligned decoding examples run (small settings)."""

from __future__ import annotations

import runpy

import pytest


def _main(path: str):
    return runpy.run_path(path, run_name="aligned_example")["main"]


def test_binary_example_moves_towards_the_ideal(capsys, tmp_path) -> None:  # noqa: ANN001
    trie = tmp_path / "binary.safetensors"
    freqs = _main("examples/aligned_binary.py")(
        ["--samples", "200", "--batch-size", "4", "--trie", str(trie)]
    )
    assert trie.is_file()
    assert abs(freqs["constrained"]["00000"] - 0.5) < 0.1  # plain constrained decoding: 1/2
    assert freqs["ASAp"].get("00000", 0) < 0.15  # ASAp: 1/17 plus the first batches' bias
    out = capsys.readouterr().out
    assert "00000" in out and "trie:" in out


def test_smollm2_example_keeps_a_trie_file(capsys, tmp_path) -> None:  # noqa: ANN001
    try:
        from decoding.adapters.smollm2 import smollm2_dir

        smollm2_dir()
    except FileNotFoundError as e:
        pytest.skip(f"SmolLM2 is not available: {e}")
    trie = tmp_path / "colors.safetensors"
    args = ["--n", "2", "--max-new-tokens", "2", "--batch-size", "2", "--trie", str(trie)]
    texts = _main("examples/aligned_smollm2.py")(args)
    assert trie.is_file() and len(texts) == 2
    colors = {"red", "green", "blue", "yellow", "purple", "orange", "black", "white"}
    assert all(any(c.startswith(t) for c in colors) for t in texts), texts
    assert "2 samples so far" in capsys.readouterr().out
    from decoding.aligned import ASAp

    assert ASAp.load(trie).samples == 2
