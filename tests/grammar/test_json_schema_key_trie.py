"""The "other property names" terminal built straight from the names' trie (key_trie.py) against
the tree route (keys.not_names spelled by encode.json_string_regex): the same bytes, for the
regex text and for the NFA, on random name sets with escapes, prefixes, the empty name and
non-ASCII characters."""

from __future__ import annotations

import json
import random
import re

import pytest

from decoding.grammar.dfa import build_dfa
from decoding.grammar.json_schema.encode import json_string_regex
from decoding.grammar.json_schema.key_trie import OtherNames
from decoding.grammar.json_schema.keys import _without_points, not_names
from decoding.grammar.json_schema.regex_ast import charset, cs_minus
from decoding.grammar.json_schema.tree_nfa import add_tree, tree_width
from decoding.grammar.regex_bytes import ByteNFA, max_width, parse_regex
from tests.grammar.test_grammar_lalr_build import _same_language

_UNSPELLABLE = re.compile("[\x00-\x07\x0b\x0e-\x1f]")  # control characters without a short JSON escape
ALPHABET = ["a", "b", "c", "/", '"', "\\", "\n", "\t", "\u00e9", "\u4e00", "\U0001f600", "\u0001", "-"]


def _dfa_of_regex(regex: str):
    n = ByteNFA()
    s, e = n.add_parsed(parse_regex(regex))
    return build_dfa(n, [s], {e: 1})


def _name_sets(count: int, seed: int) -> list[frozenset[str]]:
    rng = random.Random(seed)
    out = [frozenset({""}), frozenset({"a"}), frozenset({"", "a", "ab"}), frozenset({"a/b", 'q"', "\u00e9t\u00e9"})]
    while len(out) < count:
        names = {"".join(rng.choice(ALPHABET[: rng.randint(3, len(ALPHABET))]) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(1, 6))}
        out.append(frozenset(names))
    return out


@pytest.mark.parametrize("names", _name_sets(40, 0), ids=lambda s: repr(sorted(s))[:40])
def test_other_names_equal_the_tree_route(names: frozenset[str]) -> None:
    other = OtherNames(names)
    tree = not_names(names)
    ref_nfa = ByteNFA()
    s0, e0 = add_tree(ref_nfa, tree, "json-keys")
    reference = build_dfa(ref_nfa, [s0], {e0: 1})  # the automaton the tree route compiled
    parsed = parse_regex(other.regex())
    # the regex text: same language as the tree's automaton, re's width as the NFA builder reports
    assert _same_language(_dfa_of_regex(other.regex()), reference)
    if not any(_UNSPELLABLE.search(n) for n in names):  # there the tree's own text agrees too
        assert _same_language(_dfa_of_regex(json_string_regex(tree, unicode_escapes=False)), reference)
    n = ByteNFA()
    s, e, w = other.add_to(n)
    assert _same_language(build_dfa(n, [s], {e: 1}), reference)
    assert w == max_width(parsed) == tree_width(tree, "json-keys")
    # and Python's re agrees on JSON texts of names and near misses
    rx = re.compile(other.regex())
    probes = set(names) | {n + "x" for n in names} | {n[:-1] for n in names if n} | {"", "zz", "a\u0001"}
    for p in probes:
        text = json.dumps(p, ensure_ascii=False)
        assert bool(rx.fullmatch(text)) == (p not in names and not _UNSPELLABLE.search(p)), p


def test_other_names_refuses_what_it_cannot_spell() -> None:
    with pytest.raises(ValueError, match="no names"):
        OtherNames(frozenset())
    with pytest.raises(ValueError, match="surrogate"):
        OtherNames(frozenset({"a\ud800"}))


def test_without_points_is_cs_minus() -> None:
    rng = random.Random(2)
    for _ in range(3000):
        starts = sorted(rng.sample(range(300), rng.randint(0, 40)))
        cs = charset([(a, a + rng.randint(0, 5)) for a in starts])
        points = sorted(set(rng.sample(range(310), rng.randint(0, 6))))
        assert _without_points(cs, points) == cs_minus(cs, tuple((p, p) for p in points)), (cs, points)
