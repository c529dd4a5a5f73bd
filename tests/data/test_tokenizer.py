"""The shipped Brown SentencePiece tokenizer."""

from __future__ import annotations

import pytest

from decoding.data.tokenizer import TextTokenizer, default_tokenizer_path, file_sha256, train_sentencepiece

SHA = "89d93faf878275d024d59acce58cdc7a2b9abf6ab69eb9e9099693709445ac44"


def test_shipped_tokenizer_roundtrip() -> None:
    tok = TextTokenizer()
    assert tok.vocab_size == 4096 and (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, 3)
    assert file_sha256(default_tokenizer_path()) == SHA
    text = 'The cat sat on the mat, "quietly" -- 1961; naïve café €5.'
    ids = tok.encode(text)
    assert tok.decode(ids) == text  # identity normalization + byte fallback
    assert tok.decode([*ids, tok.eos_id, 4096, *ids], stop_at_eos=True) == text
    assert tok.decode([*tok.encode("a b"), tok.eos_id, 4096, *tok.encode("c")]) == "a b\nc"


def test_train_is_deterministic(tmp_path) -> None:
    lines = [f"the {w} sat on the mat number {i}" for i, w in enumerate(["cat", "dog", "bird"] * 40)]
    a = train_sentencepiece(lines, tmp_path / "a", vocab_size=300)
    b = train_sentencepiece(lines, tmp_path / "b", vocab_size=300)
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError, match="no text"):
        train_sentencepiece(["", " "], tmp_path / "c", vocab_size=300)
