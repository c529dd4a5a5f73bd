"""The shipped grammars accept and reject what they should, in lark and in the compiled constraint."""

from __future__ import annotations

import pytest
from lark import Lark

from decoding.grammar.loader import GRAMMARS_DIR
from tests.grammar.grammar_fixtures import GRAMMARS, get_compiled, get_tokenizer
from tests.grammar.grammar_samples import ACCEPT, REJECT


def _lark(name: str) -> Lark:
    return Lark((GRAMMARS_DIR / f"{name}.lark").read_text(), parser="lalr")


def _fast_accepts(name: str, text: str) -> bool:
    m = get_compiled("smollm2", name).matcher()
    try:
        m.accept_bytes(text.encode("utf-8"))
    except ValueError:
        return False
    return m.is_complete()


@pytest.mark.parametrize("name", GRAMMARS)
def test_accepted_strings(name: str) -> None:
    parser = _lark(name)
    tok = get_tokenizer("smollm2")
    g = get_compiled("smollm2", name)
    for text in ACCEPT[name]:
        parser.parse(text)  # lark agrees the sample is a sentence
        assert _fast_accepts(name, text), text
        m = g.matcher()  # token by token, as a model would write it
        for t in tok.encode(text):
            assert m.mask()[t], (text, t)
            m.accept_token(t)
        assert m.is_complete() and m.mask()[g.eos_token_id], text


@pytest.mark.parametrize("name", GRAMMARS)
def test_rejected_strings(name: str) -> None:
    parser = _lark(name)
    for text in REJECT[name]:
        with pytest.raises(Exception):  # noqa: B017 - lark raises several UnexpectedInput kinds
            parser.parse(text)
        assert not _fast_accepts(name, text), text


def test_binary_language_is_exactly_the_33_strings() -> None:
    """All 2^5 + ... strings of 0/1 up to length 6: accepted iff '00000' or length 5 starting with 1."""
    from itertools import product

    accepted = set()
    for n in range(7):
        for bits in product("01", repeat=n):
            s = "".join(bits)
            if _fast_accepts("binary", s):
                accepted.add(s)
    expected = {"00000"} | {"1" + "".join(b) for b in product("01", repeat=4)}
    assert accepted == expected
