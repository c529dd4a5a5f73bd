"""Vocabulary helpers: GPT-2 byte table, SmolLM2 bytes, and GPT-2 BPE against tiktoken."""

from __future__ import annotations

import pytest

from decoding.tokenizers import byte_level_decoder, vocabulary
from tests.grammar.grammar_fixtures import get_tokenizer

TEXTS = ["Hello world!!  123 ", '{"a": [1, 2.5]}\n\n', "héllo 日本語 🎉 it's", "   x\ty"]


def test_byte_level_table() -> None:
    table = byte_level_decoder()
    assert len(table) == 256 and sorted(table.values()) == list(range(256))
    assert table["Ġ"] == 0x20 and table["Ċ"] == 0x0A and table["!"] == 0x21 and table["ĉ"] == 0x09


def test_smollm2_token_bytes_reproduce_text() -> None:
    tok = get_tokenizer("smollm2")
    v = vocabulary(tok)
    assert v.kind == "byte_level" and len(v) == 49152 and v.eos_token_id == tok.eos_token_id
    for text in TEXTS:
        assert v.decode(tok.encode(text)).decode("utf-8") == text
    assert all(v.tokens[i] is None for i in tok.all_special_ids)


def test_gpt2_bpe_matches_tiktoken() -> None:
    tiktoken = pytest.importorskip("tiktoken")
    from decoding.tokenizers.gpt2 import PATTERN

    g = get_tokenizer("gpt2")
    ref = tiktoken.Encoding(name="gpt2-ref", pat_str=PATTERN, mergeable_ranks=g.ranks, special_tokens={})
    assert len(g) == 50257 and g.eos_token_id == 50256
    for text in TEXTS:
        assert g.encode(text) == ref.encode(text)
        assert g.decode(g.encode(text)) == text
