"""Languages of property names: ``inside`` every tree, ``outside`` every other tree, not a listed name.

Object keys fall into disjoint classes (listed names; keys matching some ``patternProperties``
and not others; the rest), each with its own terminal. A class is kept symbolic
(:class:`KeyLang`) so intersections across ``anyOf`` alternatives stay cheap, and is spelled as a
tree only at the end, directly for the common shapes (the complement of a few names is a trie;
one pattern that no listed name matches is the pattern itself), through automata otherwise.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache

from decoding.grammar.json_schema import automaton as fa
from decoding.grammar.json_schema.caches import MEMO_SIZE
from decoding.grammar.json_schema.hashing import cached_hash
from decoding.grammar.json_schema.regex_ast import (
    EPS,
    NOTHING,
    UNIVERSE,
    Alt,
    Chars,
    CharSet,
    Node,
    Rep,
    alt,
    any_string,
    cat,
    charset,
    cs_minus,
    literal,
    rep,
)
from decoding.grammar.json_schema.strings import dfa_of

_BIG = 1 << 40  # above every code point and marker


@cached_hash
@dataclass(frozen=True)
class KeyLang:
    """Keys in all of ``inside``, in none of ``outside``, and not in ``names``."""

    inside: frozenset[Node] = field(default_factory=frozenset)
    outside: frozenset[Node] = field(default_factory=frozenset)
    names: frozenset[str] = field(default_factory=frozenset)

    def meet(self, o: KeyLang) -> KeyLang:
        return KeyLang(self.inside | o.inside, self.outside | o.outside, self.names | o.names)

    def contains(self, key: str) -> bool:
        return (
            key not in self.names
            and all(dfa_of(t).matches(key) for t in self.inside)
            and not any(dfa_of(t).matches(key) for t in self.outside)
        )

    def dfa(self) -> fa.DFA:
        d = dfa_of(any_string())
        for t in sorted(self.inside, key=repr):
            d = fa.intersect(d, dfa_of(t))
        for t in sorted(self.outside, key=repr):
            d = fa.difference(d, dfa_of(t))
        if self.names:
            d = fa.difference(d, dfa_of(alt(*(literal(k) for k in sorted(self.names)))))
        return d

    def is_empty(self) -> bool:
        if not self.inside and not self.outside:
            return False
        if self.outside and self.inside & self.outside:
            return True
        return fa.is_empty(self.dfa())

    def tree(self) -> Node:
        """A tree of the language (raises :class:`~.automaton.TooLarge` past the caps)."""
        return _tree(self)


@lru_cache(maxsize=MEMO_SIZE)
def _tree(k: KeyLang) -> Node:
    if not k.inside and not k.outside:
        return not_names(k.names)
    if len(k.inside) == 1:
        (t,) = k.inside
        if all(fa.is_empty(fa.intersect(dfa_of(t), dfa_of(o))) for o in k.outside):
            if not any(dfa_of(t).matches(n) for n in k.names):
                return t
    if not k.inside and len(k.outside) == 1 and not k.names:
        (t,) = k.outside
        simple = _simple_complement(t)
        if simple is not None:
            return simple
    return fa.to_tree(k.dfa())


def not_names(names: frozenset[str]) -> Node:
    """Every string except ``names``: a walk along the names' trie that stops short of a name, or
    that leaves the trie (a character no name continues with) and then goes on freely.

    Written for small automata (objects often list many properties): the free tail comes once,
    after all the exits, not once per trie node; and a character no name uses at all is one
    class after any trie path, so only the few characters the names use are spelled per node
    (a class of all other characters per node costs a dozen UTF-8 states each).
    """
    if not names:
        return any_string()
    trie: dict = {}
    for n in names:
        node = trie
        for ch in n:
            node = node.setdefault(ch, {})
        node[""] = {}
    used = charset((ord(c), ord(c)) for n in names for c in n)
    unused = cs_minus(UNIVERSE, used)
    used = cs_minus(used, ())  # within UNIVERSE (lone surrogates of a name are not characters), as _exits expects
    exits = alt(cat(_paths(trie), Chars(unused)) if unused else NOTHING, _exits(trie, used))
    return alt(_inner(trie), cat(exits, any_string()))


def _inner(node: dict) -> Node:
    """Trie paths from ``node`` that do not end on a name."""
    parts = [] if "" in node else [EPS]
    parts.extend(cat(literal(c), _inner(node[c])) for c in sorted(c for c in node if c))
    return alt(*parts)


def _paths(node: dict) -> Node:
    """Every trie path from ``node`` (the empty one included)."""
    return alt(EPS, *(cat(literal(c), _paths(node[c])) for c in sorted(c for c in node if c)))


def _exits(node: dict, used: CharSet) -> Node:
    """Trie paths from ``node`` followed by a character of ``used`` that no name continues with.

    The tree :func:`~.regex_ast.alt` would make of these parts, built directly: the parts are one
    class and concatenations that start with distinct characters (nothing to merge or drop)."""
    children = sorted(c for c in node if c)
    others = _without_points(used, [ord(c) for c in children])
    parts: list[Node] = [Chars(others)] if others else []
    parts.extend(cat(literal(c), _exits(node[c], used)) for c in children)
    return parts[0] if len(parts) == 1 else Alt(tuple(parts))


def _without_points(cs: CharSet, points: list[int]) -> CharSet:
    """``cs_minus(cs, points)`` for sorted code points (``cs`` within :data:`UNIVERSE`): each point
    splits the one interval holding it (found by bisection; a trie node has few children)."""
    out = cs
    for p in points:
        i = bisect_right(out, (p, _BIG)) - 1  # the last interval starting at or before p
        if i >= 0 and p <= out[i][1]:
            lo, hi = out[i]
            out = out[:i] + (((lo, p - 1),) if p > lo else ()) + (((p + 1, hi),) if p < hi else ()) + out[i + 1 :]
    return out


def _simple_complement(t: Node) -> Node | None:
    """The complement of ``C{lo,hi}`` built directly (its automaton is a chain that nests deeply)."""
    if isinstance(t, Rep) and isinstance(t.body, Chars):
        c = t.body.cs
        other = cs_minus(UNIVERSE, c)
        parts = [rep(t.body, 0, t.lo - 1)] if t.lo > 0 else []
        if other:
            parts.append(cat(any_string(), Chars(other), any_string()))
        if t.hi is not None:
            parts.append(rep(t.body, t.hi + 1, None))
        return alt(*parts) if parts else NOTHING
    return None
