"""Spell a code-point tree as a Python regular expression (the text of a lark terminal).

:func:`json_string_regex` matches the JSON *text* of the strings the tree describes: each decoded
character may be written raw (any code point except ``"``, ``\\`` and controls) or as an escape
that decodes to it: ``\\"``, ``\\\\``, ``\\/``, ``\\b \\f \\n \\r \\t``, and ``\\u00XX`` for control
characters (any hex case). Escapes ``\\uXXXX`` of other characters are not generated (the text is
still valid JSON; this follows llguidance's default). Because every JSON escape decodes to one
character, a length counted on the tree is the code-point length of the decoded string.
Lark's byte automaton (:mod:`decoding.grammar.regex_bytes`) then spells the regex in UTF-8.

:func:`plain_regex` spells a tree over ASCII as itself (numbers, tests).
"""

from __future__ import annotations

from functools import lru_cache

from decoding.grammar.json_schema.caches import MEMO_SIZE
from decoding.grammar.json_schema.regex_ast import (
    BOS,
    MAX_CP,
    Alt,
    Cat,
    Chars,
    CharSet,
    Node,
    Rep,
    cs_complement,
    cs_intersect,
    cs_minus,
    cs_size,
)

MAX_REPEAT = 1000  # regex_bytes expands counted repeats up to this count
_SHORT = {0x22: "\\x22", 0x5C: "\\\\", 0x2F: "\\/", 0x08: "b", 0x0C: "f", 0x0A: "n", 0x0D: "r", 0x09: "t"}
_CONTROLS: CharSet = ((0, 0x1F),)
_ALL: CharSet = ((0, MAX_CP),)
_FORBIDDEN_RAW: CharSet = ((0, 0x1F), (0x22, 0x22), (0x5C, 0x5C))


def _cp(cp: int) -> str:
    """One code point in regex text that survives lark's unescaping of ``/.../`` literals.

    Lark evaluates ``\\x.. \\u.. \\U..`` escapes into raw characters before compiling, so
    ASCII punctuation (special inside classes) is written with a backslash instead.
    """
    if cp < 0x80 and (chr(cp).isalnum() or chr(cp) == "_"):
        return chr(cp)
    if cp == 0x22:
        return "\\x22"
    if 0x20 <= cp < 0x7F:
        return "\\" + chr(cp)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


@lru_cache(maxsize=MEMO_SIZE)
def char_class(cs: CharSet) -> str:
    """A Python regex for one character of ``cs`` (``[...]``, ``[^...]`` or one escaped character).

    A class is negated when its complement (surrogates counted in, which no UTF-8 text holds) is
    smaller: Python's ``re`` compiles big ranges slowly, and lark compiles every terminal.
    """
    if not cs:
        raise ValueError("empty character set")
    if cs[-1][1] >= BOS:
        raise ValueError("anchor markers cannot be spelled")
    if len(cs) == 1 and cs[0][0] == cs[0][1]:
        return _cp(cs[0][0])
    neg = cs_complement(cs, _ALL)
    if cs_size(neg) < cs_size(cs) and neg:
        return "[^" + _ranges(neg) + "]"
    return "[" + _ranges(cs) + "]"


def _ranges(cs: CharSet) -> str:
    return "".join(_cp(lo) if lo == hi else f"{_cp(lo)}-{_cp(hi)}" for lo, hi in cs)


def _hex_digit_class(nibbles: list[int]) -> str:
    if nibbles == list(range(16)):
        return "[0-9a-fA-F]"
    chars = []
    for n in nibbles:
        chars.append("0123456789abcdef"[n])
        if n >= 10:
            chars.append("ABCDEF"[n - 10])
    return chars[0] if len(chars) == 1 else "[" + "".join(chars) + "]"


@lru_cache(maxsize=MEMO_SIZE)
def json_char(cs: CharSet, unicode_escapes: bool = True) -> str:
    """Regex for the JSON text of one decoded character of ``cs`` (``\\u00XX`` only if ``unicode_escapes``)."""
    if cs and cs[-1][1] < 0x7F and cs[0][0] > 0x22 and not any(lo <= 0x2F <= hi or lo <= 0x5C <= hi for lo, hi in cs):
        # printable ASCII written only raw: the class itself (what the general case below writes)
        return _cp(cs[0][0]) if len(cs) == 1 and cs[0][0] == cs[0][1] else "[" + _ranges(cs) + "]"
    raw = cs_minus(cs, _FORBIDDEN_RAW)
    alts = [char_class(raw)] if raw else []
    short = [v for k, v in _SHORT.items() if any(lo <= k <= hi for lo, hi in cs)]
    esc = []
    if short:
        esc.append(short[0] if len(short) == 1 else "[" + "".join(short) + "]")
    controls = cs_intersect(cs, _CONTROLS) if unicode_escapes else ()
    if controls:
        by_high: dict[int, list[int]] = {}
        for lo, hi in controls:
            for cp in range(lo, hi + 1):
                by_high.setdefault(cp >> 4, []).append(cp & 15)
        hexes = [f"{h}{_hex_digit_class(lows)}" for h, lows in sorted(by_high.items())]
        if hexes == ["0[0-9a-fA-F]", "1[0-9a-fA-F]"]:
            hexes = ["[01][0-9a-fA-F]"]
        esc.append("u00" + (hexes[0] if len(hexes) == 1 else "(?:" + "|".join(hexes) + ")"))
    if esc:
        alts.append("\\\\" + (esc[0] if len(esc) == 1 else "(?:" + "|".join(esc) + ")"))
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _repeat(body: str, lo: int, hi: int | None) -> str:
    """``body`` repeated ``lo..hi`` times, nesting counts above :data:`MAX_REPEAT`."""
    g = f"(?:{body})"
    if lo > MAX_REPEAT:
        q, r = divmod(lo, MAX_REPEAT)
        head = f"(?:{g}{{{MAX_REPEAT}}}){{{q}}}" + (f"{g}{{{r}}}" if r else "")
        return head + _repeat(body, 0, None if hi is None else hi - lo)
    if hi is not None and hi > MAX_REPEAT:
        q, r = divmod(hi - lo, MAX_REPEAT)
        head = f"{g}{{{lo}}}" if lo else ""
        return head + f"(?:{g}{{0,{MAX_REPEAT}}}){{0,{q}}}" + (f"{g}{{0,{r}}}" if r else "")
    if hi is None:
        return g + ("*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}")
    if (lo, hi) == (0, 1):
        return g + "?"
    return g + (f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}")


def _spell(node: Node, char) -> str:
    out: list[str] = []
    _spell_into(node, char, out)
    return "".join(out)


def _spell_into(node: Node, char, out: list[str]) -> None:
    """Append the regex text of ``node`` to ``out`` (one join at the end, not one per level)."""
    if isinstance(node, Chars):
        out.append(char(node.cs))
    elif isinstance(node, Cat):
        for p in node.parts:
            _spell_into(p, char, out)
    elif isinstance(node, Alt):
        if not node.parts:
            raise ValueError("the empty language has no regex")
        out.append("(?:")
        for k, p in enumerate(node.parts):
            if k:
                out.append("|")
            _spell_into(p, char, out)
        out.append(")")
    elif isinstance(node, Rep):
        out.append(_repeat(_spell(node.body, char), node.lo, node.hi))
    else:
        raise TypeError(node)


@lru_cache(maxsize=MEMO_SIZE)
def json_string_regex(node: Node, unicode_escapes: bool = True) -> str:
    """Regex for the JSON text (quotes included) of the strings of ``node``.

    ``unicode_escapes=False`` leaves out ``\\u00XX`` (control characters then need a short escape
    or are not written): shorter terminals for property names outside ``properties``.
    """
    return "\\x22" + _spell(node, lambda cs: json_char(cs, unicode_escapes)) + "\\x22"


@lru_cache(maxsize=1 << 14)
def literal_json_regex(text: str) -> str:
    """``json_string_regex(literal(text))`` written from the characters directly (no tree walk):
    the regex of the JSON texts of the one string ``text`` (property names are many)."""
    return "\\x22" + "".join([json_char(((cp, cp),)) for cp in map(ord, text)]) + "\\x22"


def plain_regex(node: Node) -> str:
    """Regex for the strings of ``node`` themselves (``(?!)`` for the empty language)."""
    if node == Alt(()):
        return "(?!)"
    return _spell(node, char_class)
