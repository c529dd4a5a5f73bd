"""Matcher and batch-constraint API: EOS, rollback, fork, bitmask, byte-level details, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decoding.core.protocols import Constraint
from decoding.grammar import GrammarDeadEnd, GrammarError, compile_grammar
from decoding.tokenizers import Vocabulary
from tests.grammar.grammar_fixtures import get_compiled, get_tokenizer

BYTES = [bytes([b]) for b in range(256)]


def _byte_vocab(extra: list[bytes] = ()) -> Vocabulary:
    """One token per byte, then ``extra`` tokens, then EOS (id = len)."""
    toks = tuple(BYTES) + tuple(extra) + (None,)
    return Vocabulary(toks, len(toks) - 1, "bytes", frozenset({len(toks) - 1}))


def _allowed(g, m) -> set[bytes]:
    return {g.tokens.bytes_of[i] or b"<eos>" for i in np.flatnonzero(m.mask().numpy())}


def test_eos_only_when_complete_and_only_eos_after_it() -> None:
    g = compile_grammar("binary", _byte_vocab(), warm_seconds=0)
    m = g.matcher()
    for b in b"1010":
        assert not m.mask()[g.eos_token_id]
        m.accept_token(b)
    assert _allowed(g, m) == {b"0", b"1"}
    m.accept_token(ord("1"))
    assert m.is_complete()
    assert _allowed(g, m) == {b"<eos>"}  # every non-EOS token is masked: only EOS remains
    m.accept_token(g.eos_token_id)
    assert _allowed(g, m) == {b"<eos>"}
    with pytest.raises(ValueError, match="after EOS"):
        m.accept_token(ord("0"))
    with pytest.raises(ValueError, match="EOS is not allowed"):
        g.matcher().accept_token(g.eos_token_id)


def test_rollback_and_fork_restore_masks() -> None:
    tok = get_tokenizer("smollm2")
    g = get_compiled("smollm2", "json")
    ids = tok.encode('{"a": [1, {"b": null}], "c": "x"}')
    m = g.matcher()
    masks = [m.mask().clone()]
    for t in ids:
        m.accept_token(t)
        masks.append(m.mask().clone())
    f = m.fork()
    m.rollback(5)
    assert torch.equal(m.mask(), masks[-6])
    assert torch.equal(f.mask(), masks[-1]) and f.is_complete() and not m.is_complete()
    m.rollback(len(ids) - 5)
    assert torch.equal(m.mask(), masks[0]) and m.text() == ""
    with pytest.raises(ValueError, match="roll back"):
        m.rollback(1)


def test_special_tokens_never_allowed_and_bitmask_matches() -> None:
    g = get_compiled("smollm2", "json")
    tok = get_tokenizer("smollm2")
    m = g.matcher()
    for t in tok.encode('{"k": "v"}'):
        specials = [i for i in g.vocab.special_ids if i != g.eos_token_id]
        assert not m.mask()[specials].any()
        bits = m.bitmask().numpy().view(np.uint32)
        unpacked = np.unpackbits(bits.view(np.uint8), bitorder="little")[: g.vocab_size].astype(bool)
        assert np.array_equal(unpacked, m.mask().numpy())
        m.accept_token(t)


def test_multibyte_utf8_split_across_tokens() -> None:
    g = compile_grammar("json", _byte_vocab(), warm_seconds=0)
    m = g.matcher()
    m.accept_token(ord('"'))
    allowed = _allowed(g, m)
    assert b"\xe2" in allowed and b"\xf0" in allowed
    assert not {b"\xc0", b"\xc1", b"\xf5", b"\xff", b"\x80", b"\x01"} & allowed  # invalid leads / controls
    m.accept_token(0xED)  # U+D000..U+D7FF allowed, surrogates U+D800.. not
    assert _allowed(g, m) == {bytes([b]) for b in range(0x80, 0xA0)}
    m.rollback(1)
    for b in "€".encode():  # E2 82 AC, one token per byte
        m.accept_token(b)
    m.accept_token(ord('"'))
    assert m.is_complete() and m.text() == '"€"'


def test_tokens_spanning_several_terminals() -> None:
    extra = [b'"},', b'1, "', b"]]", b"}]", b"}]]", b"}, {"]
    g = compile_grammar("json", _byte_vocab(extra), warm_seconds=0)
    ids = {t: g.tokens.bytes_of.index(t) for t in extra}
    m = g.matcher()
    m.accept_bytes(b'[{"a": "x')  # inside a string every one of them is content or closes it
    assert all(m.mask()[i] for i in ids.values())
    m.rollback(1)
    m.accept_bytes(b'[{"a": 1')
    assert {t for t, i in ids.items() if m.mask()[i]} == {b'1, "', b"}]", b"}, {"}
    m.accept_token(ids[b"}]"])
    assert m.is_complete()


def test_sentencepiece_vocabulary() -> None:
    """'▁' is a space and <0xNN> is one raw byte."""
    from decoding.tokenizers import vocabulary

    class FakeSP:
        all_special_ids = [0, 1]
        eos_token_id = 1
        added_tokens_decoder: dict = {}
        pieces = ["<unk>", "</s>", "▁{", '"', "▁", "<0xE2>", "<0x82>", "<0xAC>", "}", "a▁b"]

        def __len__(self) -> int:
            return len(self.pieces)

        def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
            return [self.pieces[i] for i in ids]

    v = vocabulary(FakeSP())
    assert v.kind == "sentencepiece"
    assert v.tokens[:4] == (None, None, b" {", b'"') and v.tokens[5] == b"\xe2" and v.tokens[9] == b"a b"
    g = compile_grammar("json_rfc", v, warm_seconds=0)
    m = g.matcher()
    for t in [2, 3, 5, 6, 7, 3]:
        m.accept_token(t)
    assert m.text() == ' {"€"'
    assert m.mask()[4] and not m.mask()[8]  # a space, not '}' (a key needs ':' first)


def test_batch_constraint_protocol() -> None:
    g = compile_grammar("binary", _byte_vocab(), warm_seconds=0)
    c = g.constraint(3)
    assert isinstance(c, Constraint)
    assert c.mask(None).shape == (3, g.vocab_size)
    c.advance(torch.tensor([ord("1"), ord("0"), -1]))
    fork = c.fork()
    c.advance(torch.tensor([ord("1"), ord("0"), ord("0")]))
    assert c.texts() == ["11", "00", "0"] and fork.texts() == ["1", "0", ""]
    c.rollback(1)
    assert c.texts() == ["1", "0", ""]
    for _ in range(4):
        c.advance(torch.tensor([ord("0"), ord("0"), -1]))
    assert c.is_complete().tolist() == [True, True, False]
    with pytest.raises(ValueError, match="not allowed"):
        c.advance(torch.tensor([ord("0"), -1, -1]))


def test_dead_end_is_reported_with_the_rule() -> None:
    toks = (b"a", b"b", None)
    v = Vocabulary(toks, 2, "bytes", frozenset({2}))
    g = compile_grammar('start: "a" pair\npair: "c" "b"\n', v, warm_seconds=0)
    m = g.matcher()
    m.accept_token(0)
    with pytest.raises(GrammarDeadEnd, match=r"\['C'\] \(in rule 'pair'\)"):
        m.mask()


def test_grammar_errors_are_clear() -> None:
    v = _byte_vocab()
    with pytest.raises(GrammarError, match="'loop'"):
        compile_grammar('start: loop\nloop: "x" loop\n', v)
    with pytest.raises(GrammarError, match=r"line 2|Line 2|line: 2"):
        compile_grammar('start: "a"\nfoo: ( \n', v)
    with pytest.raises(GrammarError, match="json, .*arithmetic|arithmetic.*json"):
        compile_grammar("jsonn", v)
    with pytest.raises(GrammarError, match="LALR"):
        compile_grammar('start: a | b\na: "x"\nb: "x"\n', v)
    with pytest.raises(GrammarError, match="look-ahead"):
        compile_grammar("start: WORD\nWORD: /a(?=b)/\n", v)
    with pytest.raises(GrammarError, match="does not exist"):
        compile_grammar("no/such/file.lark", v)
    with pytest.raises(GrammarError, match="terminal.s. B without a pattern"):
        compile_grammar('start: "a" B?\n%declare B\n', v)
    with pytest.raises(GrammarError, match="an %import names no grammar"):
        compile_grammar('start: "a"\n%import nonexistent.X\n', v)


def test_cached_masks_equal_fresh_masks() -> None:
    """Masks served from the caches (exact, shared by top-of-stack, memoised subtrees) equal fresh ones."""
    tok = get_tokenizer("smollm2")
    for name, texts in [
        ("arithmetic", ["((1 + 2) * -3)", "(((4 - ---5)))", "(7 * (8 / 9)) - 1"]),
        ("json", ['{"a": [1, {"b": [[2]]}], "c": "x"}', '[[{"a": "b"}], [], {"c": [1]}]']),
    ]:
        warm = compile_grammar(name, tok, warm_seconds=0)
        fresh = compile_grammar(name, tok, warm_seconds=0)
        for text in texts:
            mw, mf = warm.matcher(), fresh.matcher()
            for t in tok.encode(text):
                fresh.clear_caches()
                assert torch.equal(mw.mask(), mf.mask()), (name, mw.text())
                mw.accept_token(t)
                mf.accept_token(t)
        assert warm.stats["mask_shared_hits"] + warm.stats["mask_hits"] > 0


def test_lark_common_escaped_string_is_supported() -> None:
    """common.ESCAPED_STRING uses look-behind and a lazy quantifier; it is compiled to an equal DFA."""
    g = compile_grammar(
        '%import common.ESCAPED_STRING\nstart: ESCAPED_STRING ("," ESCAPED_STRING)*\n',
        _byte_vocab(),
        warm_seconds=0,
    )
    for text, ok in [
        ('"a\\"b"', True),
        ('"a","b"', True),
        ('"a"b"', False),
        ('"x\\\\"', True),
        ('"x\\\\"y"', False),
    ]:
        m = g.matcher()
        try:
            m.accept_bytes(text.encode())
            got = m.is_complete()
        except ValueError:
            got = False
        assert got is ok, text
