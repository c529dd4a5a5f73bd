"""The shipped Brown SentencePiece tokenizer and the torch-only safetensors I/O."""

from __future__ import annotations

import pytest
import safetensors.torch as st
import torch

from decoding.data.safetensors_lite import load_file, save_file
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


def test_safetensors_lite_matches_reference(tmp_path) -> None:
    ts = {
        "a": torch.randn(3, 4),
        "b": torch.arange(7, dtype=torch.int32),
        "c": torch.randn(2, 5).to(torch.bfloat16),
        "d": torch.tensor([True, False]),
        "e": torch.zeros(0, 3),
    }
    save_file(ts, tmp_path / "x.safetensors", metadata={"k": "v"})
    ref = st.load_file(str(tmp_path / "x.safetensors"))
    ours, meta = load_file(tmp_path / "x.safetensors")
    assert meta == {"k": "v"}
    for k, v in ts.items():
        assert torch.equal(ref[k], v) and torch.equal(ours[k], v) and ours[k].dtype == v.dtype
    st.save_file(ts, str(tmp_path / "y.safetensors"), metadata={"k": "v"})
    back, _ = load_file(tmp_path / "y.safetensors")
    assert all(torch.equal(back[k], v) for k, v in ts.items())
