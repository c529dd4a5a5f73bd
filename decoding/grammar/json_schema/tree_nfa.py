"""Code-point trees -> byte NFAs directly, spelled as :mod:`.encode` spells them in regex text.

A converted terminal is first a tree (:mod:`.regex_ast`), then regex text
(:func:`~.encode.json_string_regex`, :func:`~.encode.plain_regex`) for the lark grammar. Parsing
that text back (``re._parser``) and turning it into a byte NFA was a large part of compiling a
schema; this module builds the same language from the tree: Thompson's construction over the
tree, each character set spelled in UTF-8 and, for JSON strings, as its JSON escapes too (``\\"``,
``\\\\``, ``\\/``, ``\\b \\f \\n \\r \\t``, and ``\\u00XX`` for controls when ``unicode_escapes``).
:func:`tree_width` is the longest match of the regex text in characters, the tie-break lark
computes with ``re``'s ``getwidth``. ``tests/grammar/test_grammar_lalr_build.py`` checks both
against the text route.
"""

from __future__ import annotations

from functools import lru_cache

from decoding.grammar.json_schema.automaton import thompson_repeat
from decoding.grammar.json_schema.regex_ast import Alt, Cat, Chars, CharSet, Node, Rep, cs_intersect, cs_minus
from decoding.grammar.regex_bytes import ByteNFA

try:  # the bound of re's getwidth (Python 3.11.7+), else MAXREPEAT
    from re._parser import MAXWIDTH as _MAXWIDTH  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older Python
    from re._constants import MAXREPEAT as _MAXWIDTH  # type: ignore[attr-defined]

MAXWIDTH = int(_MAXWIDTH)
_FORBIDDEN_RAW: CharSet = ((0, 0x1F), (0x22, 0x22), (0x5C, 0x5C))
_CONTROLS: CharSet = ((0, 0x1F),)
# decoded character -> the byte after the backslash of its short JSON escape
_SHORT = {0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x08: 0x62, 0x0C: 0x66, 0x0A: 0x6E, 0x0D: 0x72, 0x09: 0x74}
_HEX = "0123456789abcdef"
# per ASCII code point: 1 where a JSON string writes it escaped (controls, '"', '\\') or may (the '\/' of '/')
_ESCAPED_ASCII = bytes(1 if cp < 0x20 or cp in (0x22, 0x2F, 0x5C) else 0 for cp in range(0x80))


def add_tree(nfa: ByteNFA, node: Node, spell: str) -> tuple[int, int]:
    """Add the strings of ``node`` to ``nfa``; returns ``(start, accept)``.

    Args:
        spell: ``"plain"`` (characters as themselves, :func:`~.encode.plain_regex`), ``"json"``
            (a JSON string, quotes included, :func:`~.encode.json_string_regex`) or
            ``"json-keys"`` (the same without ``\\u00XX`` escapes, ``unicode_escapes=False``).
    """
    if spell not in ("plain", "json", "json-keys"):
        raise ValueError(f"unknown spelling {spell!r}: plain, json or json-keys")
    start, end = nfa.new(), nfa.new()
    b = _Builder(nfa, spell)
    if spell == "plain":
        b.build(node, start, end)
    else:
        a, z = nfa.new(), nfa.new()
        nfa.edges[start] += (0x22, 0x22, a)
        b.build(node, a, z)
        nfa.edges[z] += (0x22, 0x22, end)
    return start, end


def add_literal(nfa: ByteNFA, text: str) -> tuple[int, int, int]:
    """:func:`add_tree` and :func:`tree_width` of ``literal(text)`` spelled ``"json"``, without the
    tree: ``(start, accept, longest match in characters)`` of the JSON texts of the one string."""
    b = _Builder(nfa, "json")
    start, end, a = nfa.new(), nfa.new(), nfa.new()
    nfa.edges[start] += (0x22, 0x22, a)
    width = 2
    cur = a
    for cp in map(ord, text):
        nxt = nfa.new()
        b.chars(((cp, cp),), cur, nxt)
        width += 6 if cp < 0x20 else 2 if cp in _SHORT else 1
        cur = nxt
    nfa.edges[cur] += (0x22, 0x22, end)
    return start, end, min(width, MAXWIDTH)


class _Builder:
    def __init__(self, nfa: ByteNFA, spell: str) -> None:
        self.nfa = nfa
        self.json = spell != "plain"
        self.unicode_escapes = spell == "json"

    def build(self, node: Node, src: int, dst: int) -> None:
        """Strings of ``node`` from ``src`` to ``dst`` (only edges out of ``src`` and into ``dst``)."""
        nfa = self.nfa
        if isinstance(node, Chars):
            self.chars(node.cs, src, dst)
        elif isinstance(node, Cat):
            if not node.parts:
                nfa.eps[src].append(dst)
                return
            cur = src
            last = len(node.parts) - 1
            edges, eps = nfa.edges, nfa.eps
            for k, p in enumerate(node.parts):
                if k == last:
                    nxt = dst
                else:  # nfa.new(), inlined: literals make long chains
                    nxt = len(eps)
                    eps.append([])
                    edges.append([])
                if isinstance(p, Chars):
                    cs = p.cs
                    if len(cs) == 1 and cs[0][1] < 0x80 and not (self.json and 1 in _ESCAPED_ASCII[cs[0][0] : cs[0][1] + 1]):
                        edges[cur] += (cs[0][0], cs[0][1], nxt)  # one ASCII range written raw (as chars() adds it)
                    else:
                        self.chars(cs, cur, nxt)
                else:
                    self.build(p, cur, nxt)
                cur = nxt
        elif isinstance(node, Alt):
            for p in node.parts:  # every part only adds edges out of src and into dst: they may share them
                self.build(p, src, dst)
        elif isinstance(node, Rep):
            thompson_repeat(nfa, self.build, node, src, dst)
        else:
            raise TypeError(node)

    def chars(self, cs: CharSet, src: int, dst: int) -> None:
        nfa = self.nfa
        if cs and cs[-1][1] < 0x80 and (not self.json or _raw_ascii(cs)):
            e = nfa.edges[src]  # ASCII written raw: what add_codepoints adds
            for lo, hi in cs:
                e += (lo, hi, dst)
            return
        if not self.json:
            nfa.add_codepoints(src, dst, list(cs))
            return
        raw, short, controls = _json_parts(cs, self.unicode_escapes)
        if raw:
            nfa.add_codepoints(src, dst, list(raw))
        if not short and not controls:
            return
        esc = nfa.new()
        nfa.edges[src] += (0x5C, 0x5C, esc)
        for byte in short:
            nfa.edges[esc] += (byte, byte, dst)
        if controls:  # \u00XX: a small trie over the two hex digits
            u, u0, u00 = nfa.new(), nfa.new(), nfa.new()
            nfa.edges[esc] += (0x75, 0x75, u)
            nfa.edges[u] += (0x30, 0x30, u0)
            nfa.edges[u0] += (0x30, 0x30, u00)
            by_high: dict[int, list[int]] = {}
            for cp in controls:
                by_high.setdefault(cp >> 4, []).append(cp & 15)
            for high, lows in sorted(by_high.items()):
                mid = nfa.new()
                nfa.edges[u00] += (ord(_HEX[high]), ord(_HEX[high]), mid)
                for low in lows:
                    for ch in {_HEX[low], _HEX[low].upper()}:
                        nfa.edges[mid] += (ord(ch), ord(ch), dst)


@lru_cache(maxsize=1 << 14)
def _raw_ascii(cs: CharSet) -> bool:
    """Whether a JSON string writes every character of the ASCII set ``cs`` as itself only (no
    character of it is ever escaped)."""
    return not any(1 in _ESCAPED_ASCII[lo : hi + 1] for lo, hi in cs)


@lru_cache(maxsize=1 << 14)
def _json_parts(cs: CharSet, unicode_escapes: bool) -> tuple[CharSet, tuple[int, ...], tuple[int, ...]]:
    """``(characters written raw, bytes after a backslash of the short escapes, control characters
    written \\u00XX)`` of ``cs``."""
    short = tuple(v for k, v in _SHORT.items() if any(lo <= k <= hi for lo, hi in cs))
    controls: tuple[int, ...] = ()
    if unicode_escapes:
        controls = tuple(cp for lo, hi in cs_intersect(cs, _CONTROLS) for cp in range(lo, hi + 1))
    return cs_minus(cs, _FORBIDDEN_RAW), short, controls


def tree_width(node: Node, spell: str) -> int:
    """The longest match, in characters, of the regex text :mod:`.encode` writes for ``node``
    (what lark reads with ``re``'s ``getwidth``: at most ``MAXWIDTH``)."""
    w = _width(node, spell != "plain", spell == "json")
    return min(w + (2 if spell != "plain" else 0), MAXWIDTH)


def _width(node: Node, json: bool, unicode_escapes: bool) -> int:
    if isinstance(node, Chars):
        if not json:
            return 1
        _, short, controls = _json_parts(node.cs, unicode_escapes)
        return 6 if controls else 2 if short else 1
    if isinstance(node, Cat):  # the last parts first: an unbounded tail ends the walk at once
        total = 0
        for p in reversed(node.parts):
            total += _width(p, json, unicode_escapes)
            if total >= MAXWIDTH:
                return MAXWIDTH
        return total
    if isinstance(node, Alt):
        best = 0
        for p in reversed(node.parts):
            best = max(best, _width(p, json, unicode_escapes))
            if best >= MAXWIDTH:
                return MAXWIDTH
        return best
    if isinstance(node, Rep):
        w = _width(node.body, json, unicode_escapes)
        if node.hi is None:
            return MAXWIDTH if w else 0
        return min(w * node.hi, MAXWIDTH)
    raise TypeError(node)
