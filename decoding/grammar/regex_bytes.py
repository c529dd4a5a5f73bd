"""Python regular expressions -> a Thompson NFA over UTF-8 bytes.

Lark hands us each terminal as a Python ``re`` pattern. We parse it with the standard library's
own parser (``re._parser``), turn every character class into code-point intervals, and spell
each interval as UTF-8 byte-range sequences, so a multi-byte character can be split across
tokens and only valid UTF-8 (no surrogates, no overlong forms) is ever accepted.
Thompson's construction (Thompson 1968, CACM 11(6)); UTF-8 range splitting as in RE2.

Supported: literals, escapes, classes (with ranges, negation, ``\\d \\w \\s`` and their negations,
Unicode or ASCII), ``.``, groups, alternation, greedy ``* + ? {m,n}``, inline flags ``i s a``.
Not supported (a :class:`RegexError` names the construct): anchors, look-around, back-references,
lazy or possessive quantifiers, atomic groups, conditionals.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import cache, lru_cache

if sys.version_info >= (3, 11):
    import re._constants as _c
    import re._parser as _p
else:  # pragma: no cover - Python 3.10
    import sre_constants as _c
    import sre_parse as _p

MAX_CP = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
MAX_REPEAT_EXPANSION = 1000
_IGNORECASE, _DOTALL, _ASCII = 2, 16, 256

Intervals = list[tuple[int, int]]


class RegexError(ValueError):
    """A terminal uses a regular-expression feature the byte automaton cannot express."""


def normalize(iv: Intervals) -> Intervals:
    """Sorted, merged, non-overlapping closed intervals."""
    out: Intervals = []
    for lo, hi in sorted(iv):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def complement(iv: Intervals) -> Intervals:
    """Code points in ``[0, 0x10FFFF]`` not in ``iv``."""
    out: Intervals = []
    nxt = 0
    for lo, hi in normalize(iv):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return out


@cache
def _category(name: str, ascii_only: bool) -> tuple[tuple[int, int], ...]:
    top = 0x80 if ascii_only else MAX_CP + 1
    test = {
        "DIGIT": lambda ch: ch.isdecimal() if not ascii_only else "0" <= ch <= "9",
        "WORD": lambda ch: ch.isalnum() or ch == "_",
        "SPACE": lambda ch: ch.isspace() if not ascii_only else ch in " \t\n\r\f\v",
    }[name]
    out: Intervals = []
    for cp in range(top):
        if test(chr(cp)):
            if out and out[-1][1] == cp - 1:
                out[-1] = (out[-1][0], cp)
            else:
                out.append((cp, cp))
    return tuple(out)


def _category_set(cat: object, flags: int) -> Intervals:
    name = str(cat).replace("CATEGORY_", "")
    ascii_only = bool(flags & _ASCII)
    neg = name.startswith("NOT_")
    base = name[4:] if neg else name
    if base.startswith("UNI_"):
        base, ascii_only = base[4:], False
    if base.startswith("LOC_"):
        raise RegexError(f"locale-dependent class {name} is not supported")
    if base not in ("DIGIT", "WORD", "SPACE"):
        raise RegexError(f"character category {name} is not supported")
    iv = list(_category(base, ascii_only))
    return complement(iv) if neg else iv


def _case_variants(iv: Intervals) -> Intervals:
    """Add the lower/upper case forms of every code point (single-character case maps only)."""
    extra: Intervals = []
    for lo, hi in iv:
        for cp in range(lo, min(hi, lo + 0x3000) + 1):
            ch = chr(cp)
            for v in (ch.lower(), ch.upper(), ch.casefold()):
                if len(v) == 1 and v != ch:
                    extra.append((ord(v), ord(v)))
    return normalize(iv + extra)


def class_set(items: list, flags: int) -> Intervals:
    """Code points of an ``IN`` item list (``[...]``)."""
    try:
        key = (tuple(items), flags)
        return list(_class_set_memo(key))
    except TypeError:  # an unhashable item: compute directly
        return _class_set(items, flags)


@lru_cache(maxsize=1 << 14)
def _class_set_memo(key: tuple) -> tuple[tuple[int, int], ...]:
    """:func:`class_set` memoised by its items (terminals repeat the same classes)."""
    return tuple(_class_set(list(key[0]), key[1]))


def _class_set(items: list, flags: int) -> Intervals:
    neg = False
    iv: Intervals = []
    for op, av in items:
        if op is _c.NEGATE:
            neg = True
        elif op is _c.LITERAL:
            iv.append((av, av))
        elif op is _c.RANGE:
            iv.append((av[0], av[1]))
        elif op is _c.CATEGORY:
            iv.extend(_category_set(av, flags))
        else:
            raise RegexError(f"unsupported item {op} in a character class")
    iv = normalize(iv)
    if flags & _IGNORECASE:
        iv = _case_variants(iv)
    return complement(iv) if neg else iv


def _encode(cp: int) -> bytes:
    return chr(cp).encode("utf-8", "surrogatepass")


def utf8_sequences(lo: int, hi: int) -> list[list[tuple[int, int]]]:
    """Byte-range sequences matching exactly the UTF-8 encodings of code points ``lo..hi``.

    Each sequence is a list of ``(byte_lo, byte_hi)``; surrogates are excluded.
    """
    out: list[list[tuple[int, int]]] = []
    pieces = []
    if lo <= SURROGATES[1] and hi >= SURROGATES[0]:
        if lo < SURROGATES[0]:
            pieces.append((lo, SURROGATES[0] - 1))
        if hi > SURROGATES[1]:
            pieces.append((SURROGATES[1] + 1, hi))
    else:
        pieces.append((lo, hi))
    for a, b in pieces:
        for start, end in ((0, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, MAX_CP)):
            x, y = max(a, start), min(b, end)
            if x <= y:
                _split(x, y, out)
    return out


@lru_cache(maxsize=1 << 16)
def _utf8_ranges(lo: int, hi: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """:func:`utf8_sequences` as tuples, memoised: terminals repeat the same classes (string bodies, digits)."""
    return tuple(tuple(seq) for seq in utf8_sequences(lo, hi))


def _split(lo: int, hi: int, out: list[list[tuple[int, int]]]) -> None:
    n = len(_encode(lo))
    for i in range(1, n):
        m = (1 << (6 * i)) - 1
        if lo & ~m != hi & ~m:
            if lo & m:
                _split(lo, lo | m, out)
                _split((lo | m) + 1, hi, out)
                return
            if hi & m != m:
                _split(lo, (hi & ~m) - 1, out)
                _split(hi & ~m, hi, out)
                return
    a, b = _encode(lo), _encode(hi)
    out.append([(a[k], b[k]) for k in range(n)])


def parse_regex(pattern: str) -> object:
    """``pattern`` parsed by the standard library's own regex parser (``re._parser``).

    Raises:
        RegexError: not a valid Python regular expression.
    """
    try:
        return _p.parse(pattern, 0)
    except Exception as e:  # re.error
        raise RegexError(f"invalid regular expression {pattern!r}: {e}") from e


def max_width(parsed: object) -> int:
    """The longest match of a parsed pattern in characters (``re``'s bound when unbounded), as lark computes it."""
    return int(parsed.getwidth()[1])  # type: ignore[attr-defined]


def byte_edges(edges: list[int]) -> Iterator[tuple[int, int, int]]:
    """The ``(lo, hi, dst)`` triples of one state's flat edge list (:attr:`ByteNFA.edges`)."""
    it = iter(edges)
    return zip(it, it, it, strict=False)


class ByteNFA:
    """A Thompson NFA over bytes: ``eps[s]`` epsilon successors; ``edges[s]`` the byte edges out of
    ``s`` as one flat list ``[lo, hi, dst, lo, hi, dst, ...]`` (a byte in ``[lo, hi]`` goes to
    ``dst``), read with :func:`byte_edges`.

    Flat lists of ``int`` instead of one ``(lo, hi, dst)`` tuple per edge: a schema's terminals add
    thousands of edges, and every tuple is one more object to allocate and for the cyclic garbage
    collector to walk once after the compile. States that are finished can be :meth:`seal`-ed into
    tuples, which the collector stops tracking after its first pass over them.
    """

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[int]] = []
        self._tails: dict[tuple[int, tuple[tuple[int, int], ...]], int] = {}

    def new(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def seal(self, n: int) -> None:
        """Freeze the states from ``n`` on: their ``eps`` and ``edges`` become tuples (same
        members, same order). A Thompson fragment gains no edges once it is built, and tuples of
        ``int`` leave the cyclic collector's lists after one pass (lists are walked by every
        collection, a full one included, for as long as the NFA lives). Only finished states may
        be sealed: adding an edge to a sealed state raises (``append``) or is lost (``+=`` on a
        local copy)."""
        if n < len(self.eps):
            self.eps[n:] = [tuple(x) for x in self.eps[n:]]  # type: ignore[misc]
            self.edges[n:] = [tuple(x) for x in self.edges[n:]]  # type: ignore[misc]

    def truncate(self, n: int) -> None:
        """Drop the states from ``n`` on (a construction that failed half-way)."""
        del self.eps[n:], self.edges[n:]
        self._tails = {k: s for k, s in self._tails.items() if s < n and k[0] < n}

    def add_codepoints(self, src: int, dst: int, iv: Intervals) -> None:
        """Edges ``src -> dst`` reading one UTF-8 character from ``iv``.

        The continuation bytes of multi-byte characters go through states shared by every
        character (of any class) that ends in ``dst`` with the same remaining byte ranges, so
        the classes of many alternatives flowing into one state cost few states (and DFA states).
        """
        edges = self.edges[src]
        for lo, hi in normalize(iv):
            for seq in _utf8_ranges(lo, hi):
                edges += (seq[0][0], seq[0][1], self._tail(dst, seq[1:]) if len(seq) > 1 else dst)

    def _tail(self, dst: int, rest: tuple[tuple[int, int], ...]) -> int:
        """The state that reads one byte of each range of ``rest`` in turn and is then at ``dst``."""
        key = (dst, rest)
        s = self._tails.get(key)
        if s is None:
            nxt = self._tail(dst, rest[1:]) if len(rest) > 1 else dst
            s = self.new()
            self.edges[s] += (rest[0][0], rest[0][1], nxt)
            self._tails[key] = s
        return s

    def add_regex(self, pattern: str) -> tuple[int, int]:
        """Add ``pattern`` (Python ``re`` syntax); returns its ``(start, accept)`` states."""
        return self.add_parsed(parse_regex(pattern))

    def add_parsed(self, parsed: object) -> tuple[int, int]:
        """Add a pattern parsed by :func:`parse_regex`; returns its ``(start, accept)`` states."""
        start, end = self.new(), self.new()
        self._seq(list(parsed), parsed.state.flags, start, end)
        return start, end

    # --- Thompson construction over the parsed pattern ---------------------------------------
    def _seq(self, items: list, flags: int, src: int, dst: int) -> None:
        cur = src
        for k, item in enumerate(items):
            nxt = dst if k == len(items) - 1 else self.new()
            self._item(item, flags, cur, nxt)
            cur = nxt
        if not items:
            self.eps[src].append(dst)

    def _item(self, item: tuple, flags: int, src: int, dst: int) -> None:
        op, av = item
        if op is _c.LITERAL:
            self.add_codepoints(src, dst, class_set([(_c.LITERAL, av)], flags))
        elif op is _c.NOT_LITERAL:
            self.add_codepoints(src, dst, class_set([(_c.NEGATE, None), (_c.LITERAL, av)], flags))
        elif op is _c.ANY:
            self.add_codepoints(src, dst, [(0, MAX_CP)] if flags & _DOTALL else complement([(10, 10)]))
        elif op is _c.IN:
            self.add_codepoints(src, dst, class_set(av, flags))
        elif op is _c.BRANCH:
            for alt in av[1]:
                a, b = self.new(), self.new()
                self.eps[src].append(a)
                self.eps[b].append(dst)
                self._seq(list(alt), flags, a, b)
        elif op is _c.SUBPATTERN:
            _group, add, delete, sub = av
            self._seq(list(sub), (flags | add) & ~delete, src, dst)
        elif op is _c.MAX_REPEAT:
            self._repeat(av, flags, src, dst)
        elif op is _c.MIN_REPEAT:
            raise RegexError(
                "lazy quantifiers (*? +? ?? {m,n}?) are not supported: the constraint lexes greedily; "
                "write the terminal so that no match can be extended into another"
            )
        elif op is _c.AT:
            raise RegexError(f"anchors ({av}) are not supported in terminals")
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            raise RegexError("look-ahead / look-behind assertions are not supported in terminals")
        elif op is _c.GROUPREF or op is getattr(_c, "GROUPREF_EXISTS", None):
            raise RegexError("back-references are not supported in terminals")
        else:
            raise RegexError(f"regular-expression construct {op} is not supported in terminals")

    def _repeat(self, av: tuple, flags: int, src: int, dst: int) -> None:
        lo, hi, sub = av
        sub = list(sub)
        unbounded = hi == _c.MAXREPEAT
        if lo > MAX_REPEAT_EXPANSION or (not unbounded and hi > MAX_REPEAT_EXPANSION):
            raise RegexError(f"repetition {{{lo},{hi}}} is too large (at most {MAX_REPEAT_EXPANSION})")
        cur = src
        for _ in range(lo):
            nxt = self.new()
            self._seq(sub, flags, cur, nxt)
            cur = nxt
        if unbounded:
            loop = self.new()
            self.eps[cur].append(loop)
            body_end = self.new()
            self._seq(sub, flags, loop, body_end)
            self.eps[body_end].append(loop)
            self.eps[loop].append(dst)
        else:
            for _ in range(hi - lo):
                nxt = self.new()
                self.eps[cur].append(dst)
                self._seq(sub, flags, cur, nxt)
                cur = nxt
            self.eps[cur].append(dst)
