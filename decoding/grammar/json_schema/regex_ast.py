"""Regular expressions over code points: character sets and an immutable syntax tree.

Every string constraint of a schema (``pattern``, ``format``, lengths, literal values, property
names) is first written as one of these trees over the characters of the *decoded* string; only
at the end is a tree spelled as a lark terminal over the JSON text (:mod:`.encode`).

A character set is a tuple of sorted, disjoint, non-adjacent closed intervals of code points.
The alphabet is every Unicode scalar value (surrogates excluded) plus two marker symbols used
for the ECMA-262 anchors ``^`` and ``$`` (:data:`BOS`, :data:`EOS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from decoding.grammar.json_schema.hashing import cached_hash, cached_repr

MAX_CP = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
BOS = 0x110000  # marker read where the input begins (ECMA-262 ``^``)
EOS = 0x110001  # marker read where the input ends (ECMA-262 ``$``)

CharSet = tuple[tuple[int, int], ...]

UNIVERSE: CharSet = ((0, SURROGATES[0] - 1), (SURROGATES[1] + 1, MAX_CP))


def charset(intervals) -> CharSet:
    """Normalise intervals: sorted, merged, surrogates and markers kept only if given."""
    out: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if lo > hi:
            continue
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((a, b) for a, b in out)


def cs_union(a: CharSet, b: CharSet) -> CharSet:
    return charset(a + b)


def cs_intersect(a: CharSet, b: CharSet) -> CharSet:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def cs_minus(a: CharSet, b: CharSet) -> CharSet:
    return cs_intersect(a, cs_complement(b))


def cs_complement(a: CharSet, universe: CharSet = UNIVERSE) -> CharSet:
    """Code points of ``universe`` not in ``a``."""
    out = []
    nxt = 0
    for lo, hi in a:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    out.append((nxt, EOS))
    return cs_intersect(tuple(out), universe)


def cs_contains(a: CharSet, cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in a)


def cs_size(a: CharSet) -> int:
    return sum(hi - lo + 1 for lo, hi in a)


# --- syntax tree ------------------------------------------------------------------------------
class Node:
    """Base class of the tree nodes (immutable, hashable)."""

    __slots__ = ()


@cached_repr
@cached_hash
@dataclass(frozen=True)
class Chars(Node):
    """One character from ``cs``."""

    cs: CharSet


@cached_repr
@cached_hash
@dataclass(frozen=True)
class Cat(Node):
    """Concatenation; ``Cat(())`` is the empty string."""

    parts: tuple[Node, ...]


@cached_repr
@cached_hash
@dataclass(frozen=True)
class Alt(Node):
    """Alternation; ``Alt(())`` matches nothing."""

    parts: tuple[Node, ...]


@cached_repr
@cached_hash
@dataclass(frozen=True)
class Rep(Node):
    """``body`` repeated ``lo`` to ``hi`` times (``hi=None``: unbounded)."""

    body: Node
    lo: int
    hi: int | None


EPS: Node = Cat(())
NOTHING: Node = Alt(())


def chars(cs: CharSet) -> Node:
    return Chars(cs) if cs else NOTHING


def cat(*parts: Node) -> Node:
    """Concatenation, flattened; ``NOTHING`` absorbs, ``EPS`` disappears."""
    out: list[Node] = []
    for p in parts:
        if p == NOTHING:
            return NOTHING
        if isinstance(p, Cat):
            out.extend(p.parts)
        else:
            out.append(p)
    return out[0] if len(out) == 1 else Cat(tuple(out))


def alt(*parts: Node) -> Node:
    """Alternation, flattened and deduplicated; single characters are merged into one set."""
    out: list[Node] = []
    seen: set[Node] = set()
    cs: list[tuple[int, int]] = []
    has_chars = False
    for p in parts:
        for q in p.parts if isinstance(p, Alt) else (p,):
            if isinstance(q, Chars):
                cs.extend(q.cs)
                has_chars = True
            elif q not in seen:
                seen.add(q)
                out.append(q)
    if has_chars:
        out.insert(0, Chars(charset(cs)))
    return out[0] if len(out) == 1 else Alt(tuple(out))


def rep(body: Node, lo: int, hi: int | None) -> Node:
    if hi is not None and hi < lo:
        return NOTHING
    if hi == 0 or body == EPS:
        return EPS
    if body == NOTHING:
        return EPS if lo == 0 else NOTHING
    if lo == 1 and hi == 1:
        return body
    return Rep(body, lo, hi)


def opt(body: Node) -> Node:
    return rep(body, 0, 1)


@lru_cache(maxsize=1 << 14)
def literal(text: str) -> Node:
    """The tree matching exactly ``text`` (memoised: property names recur)."""
    return cat(*(Chars(((ord(c), ord(c)),)) for c in text))


def any_string() -> Node:
    return Rep(Chars(UNIVERSE), 0, None)


def length_range(node: Node) -> tuple[int, int | None]:
    """``(shortest, longest)`` length of the words of ``node`` (``longest=None``: unbounded).

    For ``NOTHING`` returns ``(1, 0)`` (an empty range).
    """
    if isinstance(node, Chars):
        return (1, 1)
    if isinstance(node, Cat):
        lo, hi = 0, 0
        for p in node.parts:
            a, b = length_range(p)
            if a > (b if b is not None else a):
                return (1, 0)
            lo += a
            hi = None if hi is None or b is None else hi + b
        return (lo, hi)
    if isinstance(node, Alt):
        ranges = [length_range(p) for p in node.parts]
        ranges = [(a, b) for a, b in ranges if b is None or a <= b]
        if not ranges:
            return (1, 0)
        lo = min(a for a, _ in ranges)
        hi = None if any(b is None for _, b in ranges) else max(b for _, b in ranges)  # type: ignore[type-var]
        return (lo, hi)
    if isinstance(node, Rep):
        a, b = length_range(node.body)
        if b is not None and a > b:
            return (0, 0) if node.lo == 0 else (1, 0)
        hi = None if node.hi is None or b is None else b * node.hi
        if b == 0:
            hi = 0
        return (a * node.lo, hi)
    raise TypeError(node)


def size(node: Node) -> int:
    """Number of tree nodes (a measure for the caps on generated terminals)."""
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Rep):
        return 1 + size(node.body)
    return 1 + sum(size(p) for p in node.parts)  # type: ignore[attr-defined]


def as_literal(node: Node) -> str | None:
    """The single word of ``node`` when it is a fixed string of single characters, else ``None``."""
    if isinstance(node, Chars):
        return chr(node.cs[0][0]) if len(node.cs) == 1 and node.cs[0][0] == node.cs[0][1] else None
    if isinstance(node, Cat):
        out = []
        for p in node.parts:
            s = as_literal(p)
            if s is None:
                return None
            out.append(s)
        return "".join(out)
    return None
