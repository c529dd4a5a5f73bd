"""The process-wide compile memos change nothing: the same grammar and the same masks whether a
schema is compiled on empty memos (cold) or after other schemas filled them (warm)."""

from __future__ import annotations

import json
import warnings

from decoding.grammar import context_cache, terminal_nfa
from decoding.grammar.compiled import CompiledGrammar
from decoding.grammar.json_schema.caches import clear_compile_caches, compile_memos
from decoding.grammar.json_schema.convert import json_schema_spec
from decoding.grammar.json_schema.shapes import Unsupported
from decoding.grammar.spec import GrammarSpec
from decoding.grammar.terminal_nfa import terminal_automata
from decoding.tokenizers import vocabulary
from tests.grammar.grammar_fixtures import assert_same_masks, get_tokenizer, masks_along
from tests.grammar.json_schema_cases import CASES, OBJ, PETS, TREE

SCHEMAS = [OBJ, TREE, PETS] + list({json.dumps(s, sort_keys=True): s for _, s, _, _ in CASES}.values())


def _canon(spec: GrammarSpec) -> tuple:
    """Everything a compiled grammar reads from a spec: terminals, rules, table (in order)."""
    t = spec.table
    return (
        [tuple(vars(x).values()) for x in spec.terminals],
        spec.ignore,
        spec.rules,
        spec.start,
        [sorted(row.items()) for row in t.actions],
        t.start_state,
        t.end_state,
    )


def _spec_or_error(schema) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ("ok", _canon(json_schema_spec(schema)))
        except (Unsupported, ValueError) as e:
            return ("error", type(e).__name__, str(e))


def test_clear_empties_every_memo() -> None:
    json_schema_spec(PETS)  # fills the memos
    memos = compile_memos()
    for name in (
        "decoding.grammar.json_schema.encode.json_char",
        "decoding.grammar.json_schema.encode.literal_json_regex",
        "decoding.grammar.json_schema.ecma.pattern_language",
        "decoding.grammar.regex_bytes._utf8_ranges",
    ):
        assert name in memos
    assert "decoding.grammar.tokens._token_matrix" not in memos  # the tokenizer's, kept
    assert terminal_nfa._SHARED.states
    clear_compile_caches()
    assert not terminal_nfa._SHARED.states and not terminal_nfa._SHARED.nfa.eps
    assert not context_cache._ENTRIES
    import decoding.grammar.json_schema.encode as enc

    assert enc.json_char.cache_info().currsize == 0


def test_same_grammar_cold_and_warm() -> None:
    """Each schema on empty memos equals it compiled after all the others (both orders)."""
    cold = []
    for s in SCHEMAS:
        clear_compile_caches()
        cold.append(_spec_or_error(s))
    assert sum(c[0] == "ok" for c in cold) > 50
    clear_compile_caches()
    warm = [_spec_or_error(s) for s in SCHEMAS]
    back = [_spec_or_error(s) for s in reversed(SCHEMAS)][::-1]
    for s, c, w, b in zip(SCHEMAS, cold, warm, back, strict=True):
        assert c == w == b, json.dumps(s)[:200]


def test_same_masks_cold_and_warm() -> None:
    """Masks along valid and invalid instances: a grammar compiled on empty memos against the same
    schema's grammar compiled after every other schema (terminals and contexts from the memos)."""
    tok = get_tokenizer("smollm2")
    vocab = vocabulary(tok)
    steps = 0
    for schema in (OBJ, TREE, PETS):
        texts = [json.dumps(inst, ensure_ascii=False) for _, s, inst, _ in CASES if s == schema]
        assert texts
        clear_compile_caches()
        cold = CompiledGrammar(json_schema_spec(schema), vocab)
        cold_masks = [masks_along(cold, tok.encode(t, add_special_tokens=False)) for t in texts]
        clear_compile_caches()
        for other in SCHEMAS[:40]:
            _spec_or_error(other)
        warm = CompiledGrammar(json_schema_spec(schema), vocab)
        assert warm._nfa is not cold._nfa
        for text, cm in zip(texts, cold_masks, strict=True):
            steps += assert_same_masks(cm, masks_along(warm, tok.encode(text, add_special_tokens=False)))
    assert steps > 50


def test_sealed_nfa_states_and_dfa() -> None:
    """The shared NFA's finished states are tuples (the collector stops walking them), with the
    same members as when they were lists: the DFA over a sealed NFA equals the one over a copy
    whose states are lists again; the states a later call adds are sealed when it returns."""
    from decoding.grammar.dfa import build_dfa
    from decoding.grammar.regex_bytes import ByteNFA

    clear_compile_caches()
    regexes = [r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"', r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", "é+|ж{2,3}|😀"]
    nfa, states = terminal_automata(regexes)
    assert nfa.eps and all(type(x) is tuple for x in nfa.eps) and all(type(x) is tuple for x in nfa.edges)
    lists = ByteNFA()
    lists.eps, lists.edges = [list(x) for x in nfa.eps], [list(x) for x in nfa.edges]
    tags = {e: 1 << i for i, (_, e, _) in enumerate(states)}
    a = build_dfa(nfa, [s for s, _, _ in states], tags)
    b = build_dfa(lists, [s for s, _, _ in states], tags)
    assert (a.delta == b.delta).all() and a.rows == b.rows and a.accepts == b.accepts and a.reach == b.reach
    assert all(type(r) is tuple for r in a.rows)
    n = len(nfa.eps)
    terminal_automata(["[a-c]x"])
    assert len(nfa.eps) > n and all(type(x) is tuple for x in nfa.eps[n:])


def test_other_names_memo() -> None:
    """The memoised "other names" text is the trie's, whatever order the set was built in, and
    the automaton built from the names alone is the trie's, edge for edge."""
    import random

    from decoding.grammar.json_schema.key_trie import OtherNames, add_other_names, other_names_regex
    from decoding.grammar.regex_bytes import ByteNFA

    rng = random.Random(17)
    alphabet = ['a', 'b', 'ab', '"', "\\", "\n", "é", "ж", "😀", "", "x" * 5]
    for _ in range(60):
        names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(1, 8))]
        a, b = frozenset(names), frozenset(reversed(names))
        other_names_regex.cache_clear()
        assert other_names_regex(a) == OtherNames(a).regex()
        assert other_names_regex(b) == OtherNames(b).regex() == other_names_regex(a)
        n1, n2 = ByteNFA(), ByteNFA()
        assert add_other_names(n1, a) == OtherNames(b).add_to(n2)
        assert [list(x) for x in n1.eps] == [list(x) for x in n2.eps]
        assert [list(x) for x in n1.edges] == [list(x) for x in n2.edges]


def test_memos_keyed_by_schema_input_are_bounded() -> None:
    """A server compiling user schemas for days must not grow the converter's memos without limit."""
    from decoding.grammar.json_schema import encode, keys, strings
    from decoding.grammar.json_schema.caches import MEMO_SIZE
    from decoding.grammar.json_schema.ecma import pattern_language

    for fn in (pattern_language, strings.dfa_of, encode.char_class, encode.json_char, encode.json_string_regex, keys._tree):
        assert fn.cache_info().maxsize == MEMO_SIZE, fn.__name__
