"""Grammars that lark's first-match lexer would lex differently from the constraint are refused.

lark's contextual lexer takes the first terminal of its order that matches (and Python ``re``'s
first matching alternative inside a terminal); the constraint lexes greedily. Where a terminal
tried first matches a proper prefix of another's lexeme (``INT`` before ``DATE``), or a regex lists
a shorter alternative first (``/\\d+|\\d+\\.\\d+/``), the constraint would generate texts that lark's
own parser rejects: :func:`~decoding.grammar.compile_grammar` raises
:class:`~decoding.grammar.GrammarError` (:mod:`decoding.grammar.lexer_order`). Grammars that
pass the check are sampled at random and every text is parsed with lark.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from lark import Lark
from lark.exceptions import LarkError

from decoding.grammar import (
    GrammarError,
    builtin_grammars,
    compile_grammar,
    grammar_source,
    json_schema_to_lark,
)
from decoding.grammar.dfa import build_dfa
from decoding.grammar.lexer_order import alternation_divergence, prefix_divergence
from decoding.grammar.regex_bytes import ByteNFA

# Single bytes, a few multi-byte pieces (so lexemes end inside tokens), then EOS.
VOCAB = [bytes([b]) for b in range(256)] + [
    b"20",
    b"19-",
    b"-0",
    b".5",
    b"12,",
    b"SELECT ",
    b"from",
    b"<eos>",
]
EOS = len(VOCAB) - 1

DATE_INT = 'start: item ("," item)*\n?item: DATE | INT\nDATE: /\\d{4}-\\d{2}-\\d{2}/\nINT: /\\d+/\n'
DATE_INT_FIXED = DATE_INT.replace("DATE:", "DATE.2:")
NUMBER_ALT = 'start: NUMBER ("," NUMBER)*\nNUMBER: /\\d+|\\d+\\.\\d+/\n'
NUMBER_ALT_FIXED = 'start: NUMBER ("," NUMBER)*\nNUMBER: /\\d+\\.\\d+|\\d+/\n'
# INT is a sublanguage of NUM: lark tries NUM first (longer pattern) and its greedy match is the whole lexeme.
NUM_INT = 'start: item (";" item)*\n?item: NUM | INT "!"\nNUM: /\\d+(\\.\\d+)?/\nINT: /\\d+/\n'
KEYWORDS = (
    'start: stmt (";" stmt)*\nstmt: "SELECT"i NAME ["FROM"i NAME] | NAME "=" NAME\n'
    "NAME: /[a-z_][a-z0-9_]*/i\n%ignore /[ ]+/\n"
)
PRIORITY_LITERALS = 'start: (A | B)+\nA.2: "a"\nB: "ab"\n'


def compile_text(text: str, **kw) -> object:
    return compile_grammar(text, VOCAB, EOS, warm_seconds=0, **kw)


def lark_parses(text: str, source: str) -> bool:
    try:
        Lark(source, parser="lalr", lexer="contextual").parse(text)
    except LarkError:
        return False
    return True


def random_sentences(g, n: int, seed: int, max_tokens: int = 24) -> list[str]:
    """``n`` random sentences: uniform allowed tokens, then the shortest completion."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        m = g.matcher()
        for _ in range(rng.randrange(max_tokens)):
            allowed = torch.nonzero(m.mask()).flatten().tolist()
            choices = [t for t in allowed if t != EOS]
            if not choices or (EOS in allowed and rng.random() < 0.15):
                break
            m.accept_token(rng.choice(choices))
        tail = g.completer.complete(m.state)
        assert tail is not None
        m.accept_bytes(tail)
        assert m.is_complete()
        out.append(m.text())
    return out


def test_date_before_int_is_refused_with_terminals_rule_example_and_fix():
    with pytest.raises(GrammarError) as err:
        compile_text(DATE_INT)
    msg = str(err.value)
    assert "INT" in msg and "DATE" in msg
    assert "rule 'item'" in msg
    assert "'0000' of '0000-00-00'" in msg
    assert "lark's lexer tries INT first" in msg
    assert "higher priority (DATE.1: ...)" in msg and "prefix-free" in msg


def test_the_refused_date_grammar_really_diverges_from_lark():
    g = compile_text(DATE_INT, check_lexer=False)
    m = g.matcher()
    m.accept_bytes(b"2019-02-28")
    assert m.is_complete()  # the constraint generates it ...
    assert not lark_parses("2019-02-28", DATE_INT)  # ... lark lexes 2019 as INT and fails at '-'
    assert lark_parses("2019-02-28", DATE_INT_FIXED)


def test_alternative_order_inside_a_terminal_is_refused():
    with pytest.raises(GrammarError) as err:
        compile_text(NUMBER_ALT)
    msg = str(err.value)
    assert "terminal NUMBER" in msg and "alternative 1 comes before alternative 2" in msg
    assert "'0.0'" in msg and "longer alternative first" in msg
    assert not lark_parses("3.14", NUMBER_ALT)


def test_alternatives_sharing_a_prefix_are_checked():
    """re's parser writes ``ab|abc`` as ``ab(?:|c)``: still the first alternative wins."""
    source = 'start: (A ",")+\nA: /ab|abc/\n'
    with pytest.raises(
        GrammarError, match="alternative 1 comes before alternative 2 and matches a shorter prefix of 'abc'"
    ):
        compile_text(source)
    assert not lark_parses("abc,", source)
    compile_text(source.replace("ab|abc", "abc|ab"))


def test_literal_with_higher_priority_before_its_extension_is_refused():
    with pytest.raises(GrammarError, match=r"lark's lexer tries A first and lexes 'a' of 'ab' as A"):
        compile_text(PRIORITY_LITERALS)
    assert not lark_parses("ab", PRIORITY_LITERALS)
    compile_text('start: (A | B)+\nA: "a"\nB: "ab"\n')  # lark tries the longer literal first


@pytest.mark.parametrize(
    "source",
    [DATE_INT_FIXED, NUMBER_ALT_FIXED, NUM_INT, KEYWORDS],
    ids=["date2", "number", "num-int", "keywords"],
)
def test_fixed_grammars_compile_and_random_texts_parse_with_lark(source):
    g = compile_text(source)
    texts = random_sentences(g, 40, seed=len(source))
    assert len(set(texts)) > 10
    for text in texts:
        assert lark_parses(text, source), text


@pytest.mark.parametrize("name", builtin_grammars())
def test_shipped_grammars_pass(name):
    compile_text(name, check_lexer=True)


def test_shipped_grammars_random_texts_parse_with_lark():
    for name in ("sql_select", "arithmetic", "csv", "json_rfc"):
        g = compile_text(name)
        source = grammar_source(name)[0]
        for text in random_sentences(g, 15, seed=1):
            assert lark_parses(text, source), (name, text)


def test_common_lark_terminals_pass():
    compile_text(
        "start: (SIGNED_NUMBER | NUMBER | WORD | CNAME | ESCAPED_STRING | FLOAT | INT)+\n"
        "%import common (SIGNED_NUMBER, NUMBER, WORD, CNAME, ESCAPED_STRING, FLOAT, INT, WS)\n%ignore WS\n"
    )


def test_the_json_schema_path_is_not_checked():
    """json_schema_to_lark's number terminals may list a shorter alternative first (here ``[5-9]``
    before ``[1-9][0-9]+``): lark rejects ``50``, the schema allows it and the constraint generates it.
    The JSON Schema path compiles with ``check_lexer=False``; the same text given as a lark grammar is
    checked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = json_schema_to_lark({"type": "integer", "minimum": 5})
    g = compile_text(source, check_lexer=False)
    m = g.matcher()
    m.accept_bytes(b"50")
    assert m.is_complete() and not lark_parses("50", source)
    with pytest.raises(GrammarError, match="alternative 1 comes before alternative 2"):
        compile_text(source)


def _dfa(*regexes: str):
    nfa = ByteNFA()
    starts, tags = [], {}
    for k, r in enumerate(regexes):
        s, e = nfa.add_regex(r)
        starts.append(s)
        tags[e] = tags.get(e, 0) | 1 << k
    return build_dfa(nfa, starts, tags)


def test_prefix_divergence_examples():
    assert prefix_divergence(_dfa(r"\d+"), _dfa(r"\d{4}-\d{2}")) == b"0000-00"
    assert prefix_divergence(_dfa(r"\d+(\.\d+)?"), _dfa(r"\d+")) is None  # the first matches all of it
    assert prefix_divergence(_dfa(r"\d+"), _dfa(r"\d+(\.\d+)?")) == b"0.0"
    assert prefix_divergence(_dfa("ab"), _dfa("a")) is None
    assert prefix_divergence(_dfa(r"[a-z]+"), _dfa("select")) is None  # lark re-types it (keywords)
    assert alternation_divergence(_dfa(r"\d+", r"\d+\.\d+"), 2) == (b"0.0", 0, 1)
    assert alternation_divergence(_dfa(r"\d+\.\d+", r"\d+"), 2) is None
    assert alternation_divergence(_dfa("a", "ab", "abc"), 3) == (b"ab", 0, 1)
