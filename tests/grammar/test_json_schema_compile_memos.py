"""The compile-time shortcuts of the JSON Schema converter change nothing: cached hashes and reprs
equal the dataclass-generated ones, the memoised emptiness test gives the same grammars as the
unmemoised one, and the tree-level non-emptiness test agrees with the automaton's."""

from __future__ import annotations

import dataclasses
import json
import random
import warnings

import pytest

from decoding.grammar.json_schema import automaton as fa
from decoding.grammar.json_schema import json_schema_to_lark
from decoding.grammar.json_schema import keywords as kw
from decoding.grammar.json_schema.ecma import pattern_language
from decoding.grammar.json_schema.hashing import cached_hash
from decoding.grammar.json_schema.regex_ast import Alt, Cat, Chars, Node, Rep
from decoding.grammar.json_schema.shapes import Algebra, ObjAtom, Ref, Shape, Unsupported
from decoding.grammar.json_schema.strings import _has_word, dfa_of
from tests.grammar.json_schema_cases import CASES, OBJ, PETS, TREE

SCHEMAS = [OBJ, TREE, PETS, *{json.dumps(s, sort_keys=True): s for _, s, _, _ in CASES}.values()]


def _random_tree(rng: random.Random, depth: int = 0) -> Node:
    k = rng.randrange(4 if depth < 4 else 1)
    if k == 0:
        lo = rng.randrange(0, 200)
        return Chars(() if rng.random() < 0.15 else ((lo, lo + rng.randrange(3)),))
    if k == 3:
        lo = rng.randrange(3)
        return Rep(_random_tree(rng, depth + 1), lo, rng.choice([None, lo + 1, max(0, lo - 1)]))  # hi < lo too
    parts = tuple(_random_tree(rng, depth + 1) for _ in range(rng.randrange(3)))
    return Cat(parts) if k == 1 else Alt(parts)


def _dataclass_repr(x: object) -> str:
    """What ``@dataclass`` writes for ``x`` (fields in order, values by their own repr)."""
    if isinstance(x, tuple):
        inner = ", ".join(_dataclass_repr(v) for v in x)
        return f"({inner},)" if len(x) == 1 else f"({inner})"
    if dataclasses.is_dataclass(x):
        fields = ", ".join(f"{f.name}={_dataclass_repr(getattr(x, f.name))}" for f in dataclasses.fields(x))
        return f"{type(x).__qualname__}({fields})"
    return repr(x)


def test_cached_hash_and_repr_equal_the_generated_ones() -> None:
    rng = random.Random(0)
    for _ in range(300):
        t = _random_tree(rng)
        assert repr(t) == _dataclass_repr(t) and repr(t) == repr(t)
        fields = tuple(getattr(t, f.name) for f in dataclasses.fields(t))
        assert hash(t) == hash(fields) == hash(t)
    ref = Ref(frozenset({1, 2}), frozenset({Ref(frozenset({3}))}))
    assert hash(ref) == hash((ref.pos, ref.neg))
    atom = ObjAtom(props=(("a", ref),), required=("a",))
    assert hash(atom) == hash(tuple(getattr(atom, f.name) for f in dataclasses.fields(atom)))
    assert hash(Shape()) == hash(tuple(getattr(Shape(), f.name) for f in dataclasses.fields(Shape)))


def test_cached_hash_refuses_a_class_without_a_generated_hash() -> None:
    with pytest.raises(TypeError, match="no generated __hash__"):

        @cached_hash
        class Plain:
            pass


def test_tree_non_emptiness_agrees_with_the_automaton() -> None:
    rng = random.Random(1)
    trees = [_random_tree(rng) for _ in range(400)]
    trees += [pattern_language(p) for p in ["^[a-z]+$", "^(a|b){2,3}$", "x", "^$", "^\\d{4}-\\d{2}$", "[^\\s\\S]"]]
    seen = set()
    for t in trees:
        has = _has_word(t)
        assert has == (not fa.is_empty(dfa_of(t))), t
        seen.add(has)
    assert seen == {True, False}


class _Forgetful(dict):
    """A memo that never remembers."""

    def __setitem__(self, key, value) -> None:
        pass


def _grammars() -> list[str]:
    out = []
    for schema in SCHEMAS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out.append(json_schema_to_lark(schema))
            except Unsupported as e:
                out.append(f"unsupported: {e}")
    return out


def test_emptiness_memo_gives_the_same_grammars(monkeypatch: pytest.MonkeyPatch) -> None:
    memoised = _grammars()
    monkeypatch.setattr(kw, "Algebra", lambda norm: Algebra(norm, _empty_memo=_Forgetful()))
    assert _grammars() == memoised
    assert sum(not g.startswith("unsupported") for g in memoised) > 80


def test_lark_value_len_equals_lark() -> None:
    """The tie-break length of a regex terminal is lark's ``len(eval_escaping(regex))``."""
    from lark.exceptions import GrammarError
    from lark.load_grammar import eval_escaping

    from decoding.grammar.json_schema.bnf import _lark_value_len

    rng = random.Random(3)
    pieces = ["\\", "\\\\", "\\x22", "\\u00e9", "\\U0001f600", "\\n", "\\t", "\\/", "\\'", '\\"', "'", '"', "a", "[", "]", "\u00e9", "\\d", "\\N"]
    texts = [json_schema_to_lark(s) for s in (OBJ, TREE, PETS)]
    regexes = [line.split(": /", 1)[1][:-1] for t in texts for line in t.splitlines() if ": /" in line]
    regexes += ["".join(rng.choice(pieces) for _ in range(rng.randrange(8))) for _ in range(3000)]
    for r in regexes:
        try:
            expected = len(eval_escaping(r))
        except GrammarError:
            with pytest.raises(GrammarError):
                _lark_value_len.__wrapped__(r)
            continue
        assert _lark_value_len.__wrapped__(r) == expected, r


def test_literal_json_regex_equals_the_tree_route() -> None:
    from decoding.grammar.json_schema.encode import json_string_regex, literal_json_regex
    from decoding.grammar.json_schema.regex_ast import literal

    rng = random.Random(4)
    alphabet = ["a", "Z", "0", "_", "-", "/", '"', "\\", "\n", "\u0001", "\u00e9", "\u4e00", "\U0001f600", " ", "$", "."]
    names = ["", "a", "ab", *("".join(rng.choice(alphabet) for _ in range(rng.randrange(6))) for _ in range(500))]
    for n in names:
        assert literal_json_regex(n) == json_string_regex(literal(n)), n


def test_number_emptiness_stops_at_the_first_member() -> None:
    """``NumAtom.is_empty`` (which lists at most one member) equals the test on the full list."""
    from fractions import Fraction

    from decoding.grammar.json_schema.numbers import NumAtom

    rng = random.Random(5)
    fr = [Fraction(n, d) for n in range(-6, 7) for d in (1, 2, 3)]
    seen = set()
    for _ in range(3000):
        lo, hi = rng.choice([None, *fr]), rng.choice([None, *fr])
        atom = NumAtom(
            integer=rng.random() < 0.5,
            lo=lo,
            lo_excl=rng.random() < 0.3,
            hi=hi,
            hi_excl=rng.random() < 0.3,
            multiples=tuple(rng.sample([Fraction(1, 2), Fraction(2), Fraction(3), Fraction(5, 3)], rng.randrange(3))),
            not_values=frozenset(rng.sample(fr, rng.randrange(4))),
            not_multiples=tuple(rng.sample([Fraction(2), Fraction(3)], rng.randrange(2))),
        )
        full = atom._finite()
        by_list = (atom.integer and atom.nonint) or (
            atom.lo is not None and atom.hi is not None and (atom.lo > atom.hi or (atom.lo == atom.hi and (atom.lo_excl or atom.hi_excl)))
        ) or (full is not None and not full)
        assert atom.is_empty() == by_list, atom
        seen.add(by_list)
    assert seen == {True, False}


def test_literal_name_automaton_equals_the_tree_route() -> None:
    """A listed name's byte NFA and width built without a tree equal the tree route's."""
    from decoding.grammar.dfa import build_dfa
    from decoding.grammar.json_schema.regex_ast import literal
    from decoding.grammar.json_schema.tree_nfa import add_literal, add_tree, tree_width
    from decoding.grammar.regex_bytes import ByteNFA
    from tests.grammar.test_grammar_lalr_build import _same_language

    rng = random.Random(6)
    alphabet = ["a", "Z", "_", "/", '"', "\\", "\n", "\b", "\u0001", "\u00e9", "\U0001f600", "-"]
    for name in ["", "a", *("".join(rng.choice(alphabet) for _ in range(rng.randrange(6))) for _ in range(150))]:
        n1, n2 = ByteNFA(), ByteNFA()
        s1, e1, w1 = add_literal(n1, name)
        s2, e2 = add_tree(n2, literal(name), "json")
        assert _same_language(build_dfa(n1, [s1], {e1: 1}), build_dfa(n2, [s2], {e2: 1})), name
        assert w1 == tree_width(literal(name), "json"), name
