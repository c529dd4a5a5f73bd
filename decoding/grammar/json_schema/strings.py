"""String constraints: one conjunction of lengths, languages (``pattern``, ``format``) and values.

A :class:`StrAtom` is a set of strings; unions are lists of atoms. Lengths are in code points
(as ``jsonschema`` counts them). :meth:`StrAtom.tree` spells the set as a regular-expression tree;
the common cases are built directly (one pattern with its length bounds by splitting the
pattern at its fixed-length parts), the rest through automata (:mod:`.automaton`).

``maxLength`` above :data:`MAX_LENGTH` is enforced as :data:`MAX_LENGTH` (a lexer automaton
counts every character): longer strings are never generated, a documented under-approximation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache

from decoding.grammar.json_schema import automaton as fa
from decoding.grammar.json_schema.caches import MEMO_SIZE
from decoding.grammar.json_schema.hashing import cached_hash
from decoding.grammar.json_schema.regex_ast import (
    NOTHING,
    UNIVERSE,
    Alt,
    Cat,
    Chars,
    Node,
    Rep,
    alt,
    cat,
    length_range,
    literal,
    rep,
)

MAX_LENGTH = 1000
EXACT_COUNT = 64  # length bounds up to this are made exact through automata when the tree cannot


@lru_cache(maxsize=MEMO_SIZE)
def dfa_of(node: Node) -> fa.DFA:
    return fa.minimize(fa.determinize(node))


def _has_word(node: Node) -> bool:
    """Whether the language of ``node`` is non-empty (read off the tree, as the Thompson automaton
    of :func:`dfa_of` has it: ``Rep`` takes ``lo`` copies of its body even when ``hi < lo``)."""
    if isinstance(node, Chars):
        return bool(node.cs)
    if isinstance(node, Cat):
        return all(_has_word(p) for p in node.parts)
    if isinstance(node, Alt):
        return any(_has_word(p) for p in node.parts)
    if isinstance(node, Rep):
        return node.lo == 0 or _has_word(node.body)
    raise TypeError(node)


def _fixed(node: Node) -> int | None:
    lo, hi = length_range(node)
    return lo if lo == hi else None


def restrict(node: Node, lo: int, hi: int | None, approx: bool = False) -> Node | None:
    """The words of ``node`` with length in ``[lo, hi]``, built on the tree (``None``: not this way).

    With ``approx``, parts whose lengths cannot be split exactly get fixed shares of the length
    budget: the result is then a subset of the exact words (sound, possibly not complete).
    """
    lo = max(lo, 0)
    a, b = length_range(node)
    if b is not None and a > b:
        return NOTHING
    if a >= lo and (hi is None or (b is not None and b <= hi)):
        return node
    if (hi is not None and (hi < a or hi < lo)) or (b is not None and b < lo):
        return NOTHING
    if isinstance(node, Alt):
        parts = [restrict(p, lo, hi, approx) for p in node.parts]
        return None if any(p is None for p in parts) else alt(*parts)  # type: ignore[arg-type]
    if isinstance(node, Rep):
        return _restrict_rep(node, lo, hi, approx)
    if isinstance(node, Cat):
        return _restrict_cat(node, lo, hi, approx)
    return None


def _restrict_rep(node: Rep, lo: int, hi: int | None, approx: bool) -> Node | None:
    width = _fixed(node.body)
    if width:
        k_lo = max(node.lo, -(-lo // width))
        k_hi = hi // width if hi is not None else None
        if node.hi is not None:
            k_hi = node.hi if k_hi is None else min(k_hi, node.hi)
        return rep(node.body, k_lo, k_hi)
    if node.hi is not None and node.hi <= 4:  # a few copies: spell them out
        copies = [cat(*[node.body] * k) for k in range(node.lo, node.hi + 1)]
        return restrict(alt(*copies), lo, hi, approx)
    if not approx:
        return None
    bmin, bmax = length_range(node.body)
    if bmin == 0:
        return None
    if hi is None:  # only a lower bound: enough copies, each at least the shortest body
        return rep(node.body, max(node.lo, -(-lo // bmin)), None)
    share = max(bmin, hi // 4)
    count = hi // share
    if node.hi is not None:
        count = min(count, node.hi)
    if count <= 0:
        return None
    body = restrict(node.body, max(bmin, -(-lo // count)), share, approx)
    if body is None or body == NOTHING:
        return None
    shortest = length_range(body)[0]
    need = max(node.lo, -(-lo // shortest)) if shortest else max(node.lo, 1 if lo else 0)
    return rep(body, need, count) if need <= count else NOTHING


def _restrict_cat(node: Cat, lo: int, hi: int | None, approx: bool) -> Node | None:
    ranges = [length_range(p) for p in node.parts]
    variable = [i for i, (x, y) in enumerate(ranges) if x != y]
    fixed = sum(x for i, (x, _) in enumerate(ranges) if i not in variable)
    if len(variable) == 1:
        i = variable[0]
        inner = restrict(node.parts[i], lo - fixed, None if hi is None else hi - fixed, approx)
        return None if inner is None else cat(*node.parts[:i], inner, *node.parts[i + 1 :])
    for i in variable:  # split a part with few possible lengths into fixed-length cases
        x, y = ranges[i]
        if y is None or y - x > 4:
            continue
        pieces = []
        for n in range(x, y + 1):
            part = restrict(node.parts[i], n, n, approx)
            if part is None:
                break
            if part == NOTHING:
                continue
            whole = restrict(cat(*node.parts[:i], part, *node.parts[i + 1 :]), lo, hi, approx)
            if whole is None:
                break
            pieces.append(whole)
        else:
            return alt(*pieces)
    if not approx:
        return None
    # budget split: every variable part gets its own range, the sum stays within [lo, hi]
    mins = {i: ranges[i][0] for i in variable}
    budget = None if hi is None else hi - fixed
    shares: dict[int, tuple[int, int | None]] = {}
    if budget is not None:
        spare = budget - sum(mins.values())
        if spare < 0:
            return NOTHING
        each = spare // len(variable)
        for i in variable:
            top = ranges[i][1]
            extra = each if top is None else min(each, top - mins[i])
            shares[i] = (mins[i], mins[i] + extra)
    else:
        shares = {i: (mins[i], None) for i in variable}
    need = lo - fixed - sum(mins.values())
    if need > 0:  # the first part that can grow carries the lower bound
        for i in variable:
            top = shares[i][1]
            room = (ranges[i][1] if top is None else top) if ranges[i][1] is not None or top is not None else None
            if room is None or room - mins[i] >= need:
                shares[i] = (mins[i] + need, shares[i][1])
                break
        else:
            return None
    parts = list(node.parts)
    for i in variable:
        part = restrict(node.parts[i], shares[i][0], shares[i][1], approx)
        if part is None:
            return None
        parts[i] = part
    return cat(*parts)


@cached_hash
@dataclass(frozen=True)
class StrAtom:
    """A set of strings: the conjunction of every field (``values=None``: no finite list)."""

    min_len: int = 0
    max_len: int | None = None
    trees: frozenset[Node] = field(default_factory=frozenset)
    not_trees: frozenset[Node] = field(default_factory=frozenset)
    values: frozenset[str] | None = None
    not_values: frozenset[str] = field(default_factory=frozenset)

    def is_top(self) -> bool:
        return self == StrAtom()

    def contains(self, s: str) -> bool:
        if self.values is not None and s not in self.values:
            return False
        if s in self.not_values or len(s) < self.min_len:
            return False
        if self.max_len is not None and len(s) > self.max_len:
            return False
        if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
            return False
        return all(dfa_of(t).matches(s) for t in self.trees) and not any(dfa_of(t).matches(s) for t in self.not_trees)

    def intersect(self, o: StrAtom) -> StrAtom:
        values = self.values if o.values is None else o.values if self.values is None else self.values & o.values
        hi = self.max_len if o.max_len is None else o.max_len if self.max_len is None else min(self.max_len, o.max_len)
        return StrAtom(
            max(self.min_len, o.min_len),
            hi,
            self.trees | o.trees,
            self.not_trees | o.not_trees,
            values,
            self.not_values | o.not_values,
        )

    def complement(self) -> list[StrAtom]:
        """Atoms whose union is every string not in this set (De Morgan)."""
        out = []
        if self.min_len > 0:
            out.append(StrAtom(max_len=self.min_len - 1))
        if self.max_len is not None:
            out.append(StrAtom(min_len=self.max_len + 1))
        out.extend(StrAtom(not_trees=frozenset({t})) for t in self.trees)
        out.extend(StrAtom(trees=frozenset({t})) for t in self.not_trees)
        if self.values is not None:
            out.append(StrAtom(not_values=self.values))
        if self.not_values:
            out.append(StrAtom(values=self.not_values))
        return out

    def is_empty(self) -> bool:
        """True only when the set is certainly empty."""
        if self.values is not None:
            return not any(self.contains(v) for v in self.values)
        if self.max_len is not None and self.max_len < self.min_len:
            return True
        if not self.trees and not self.not_trees:
            return False
        if len(self.trees) == 1 and not self.not_trees and not self.not_values and not self.min_len:
            if self.max_len is None and _has_word(next(iter(self.trees))):
                return False  # one tree, no other constraint: its automaton is non-empty too
        try:
            return fa.is_empty(self._dfa(cap=False))
        except fa.TooLarge:
            return False

    def _dfa(self, cap: bool = True) -> fa.DFA:
        d = None
        for t in sorted(self.trees, key=repr):
            d = dfa_of(t) if d is None else fa.intersect(d, dfa_of(t))
        if d is None:
            d = dfa_of(any_string())
        for t in sorted(self.not_trees, key=repr):
            d = fa.difference(d, dfa_of(t))
        if self.not_values:
            d = fa.difference(d, dfa_of(alt(*(literal(v) for v in sorted(self.not_values)))))
        hi = self.max_len
        if cap and (hi is None or hi > MAX_LENGTH) and self.min_len > MAX_LENGTH:
            raise fa.TooLarge(f"minLength {self.min_len} is above the supported {MAX_LENGTH}")
        if self.min_len or hi is not None:
            d = fa.restrict_length(d, self.min_len, hi)
        return d

    def tree(self) -> Node:
        """A tree for the set (maxLength capped at :data:`MAX_LENGTH`).

        Raises:
            fa.TooLarge: the set has no regular expression within the size caps.
        """
        if self.values is not None:
            return alt(*(literal(v) for v in sorted(self.values) if self.contains(v)))
        lo = self.min_len
        hi = self.max_len if self.max_len is None or self.max_len <= MAX_LENGTH else MAX_LENGTH
        if lo > MAX_LENGTH:
            raise fa.TooLarge(f"minLength {lo} is above the supported {MAX_LENGTH}")
        capped = StrAtom(lo, hi, self.trees, self.not_trees, None, self.not_values)
        if not self.trees and not self.not_trees and not self.not_values:
            return rep(Chars(UNIVERSE), lo, hi)
        single = len(self.trees) == 1 and not self.not_trees and not self.not_values
        if single:
            (t,) = self.trees
            r = restrict(t, lo, hi)
            if r is not None:
                return r
            if hi is not None and hi > EXACT_COUNT:  # a counter this long: straight to the approximation
                r = restrict(t, lo, hi, approx=True)
                if r is not None:
                    return r
        try:
            d = capped._dfa()
            if d.num_states > fa.MAX_ELIMINATION_STATES:
                raise fa.TooLarge(f"{d.num_states} automaton states")
            return fa.to_tree(d)
        except fa.TooLarge:
            if single:
                r = restrict(next(iter(self.trees)), lo, hi, approx=True)
                if r is not None:
                    return r
            raise


@cache
def any_string() -> Node:
    return rep(Chars(UNIVERSE), 0, None)
