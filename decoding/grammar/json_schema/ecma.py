"""ECMA-262 regular expressions (JSON Schema ``pattern``) -> the language of strings they match.

JSON Schema evaluates ``pattern`` with ECMA-262 semantics on the decoded string, unanchored
(a string is valid when the expression matches *somewhere* in it). Validators written in other
languages use their own engines (Python's ``jsonschema`` uses ``re``), so every character class
is read as the intersection of the ECMA-262 and the Python reading: ``\\d`` is ``[0-9]`` (Python
would add other decimal digits), ``\\D`` excludes every Unicode decimal digit (ECMA-262 would allow
them), ``.`` excludes ``\\n \\r \\u2028 \\u2029``. The language accepted is then valid under both.

Anchors ``^`` and ``$`` are read as marker symbols at the two ends of the input, so an anchor
anywhere (``(^a|b)c``, ``a$|^b``) is exact. Not supported (a :class:`RegexUnsupported` names it):
look-around, back-references, word boundaries ``\\b \\B``, anchors under a quantifier.
Lazy quantifiers match the same set of strings as greedy ones, so they are accepted.
Characters are code points (the ``u`` flag; Python agrees).
"""

from __future__ import annotations

import unicodedata
from functools import cache, lru_cache

from decoding.grammar.json_schema import automaton as fa
from decoding.grammar.json_schema.caches import MEMO_SIZE
from decoding.grammar.json_schema.regex_ast import (
    BOS,
    EOS,
    EPS,
    MAX_CP,
    UNIVERSE,
    Alt,
    Cat,
    Chars,
    CharSet,
    Node,
    Rep,
    alt,
    any_string,
    cat,
    chars,
    charset,
    cs_complement,
    cs_intersect,
    cs_union,
    rep,
)

MAX_COUNT = 10_000


class RegexUnsupported(ValueError):
    """A pattern uses a construct that no regular language can express exactly (or is malformed)."""


# --- character classes: (narrow, wide) readings ------------------------------------------------
def _scan(test) -> CharSet:
    out = []
    start = None
    for cp in range(MAX_CP + 2):
        ok = cp <= MAX_CP and not (0xD800 <= cp <= 0xDFFF) and test(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    return tuple(out)


@cache
def _all_code_points() -> str:
    """Every code point but the surrogates, in order (``_runs`` maps positions back)."""
    return "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, MAX_CP + 1)))


def _runs(pattern: str) -> CharSet:
    """The code points Python's ``re`` class ``pattern`` matches, as intervals (found by ``re`` in
    C over all code points at once: what :func:`_scan` does with ``str`` methods, 20x faster)."""
    import re

    out = []
    for m in re.finditer(pattern + "+", _all_code_points()):
        a, b = m.start(), m.end() - 1
        a, b = (a if a < 0xD800 else a + 0x800), (b if b < 0xD800 else b + 0x800)
        if a < 0xD800 <= b:  # a run across the surrogate gap is two intervals
            out += [(a, 0xD7FF), (0xE000, b)]
        else:
            out.append((a, b))
    return tuple(out)


@cache
def _py_digit() -> CharSet:
    return _runs(r"\d")  # str.isdecimal


@cache
def _py_word() -> CharSet:
    return _runs(r"\w")  # str.isalnum() or "_"


@cache
def _py_space() -> CharSet:
    return _runs(r"\s")  # str.isspace


_ECMA_SPACE = charset(
    [(9, 13), (32, 32), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029)]
    + [(0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)]
)
_ASCII_DIGIT: CharSet = ((48, 57),)
_ASCII_WORD: CharSet = charset([(48, 57), (65, 90), (95, 95), (97, 122)])
_LINE_TERMINATORS: CharSet = charset([(10, 10), (13, 13), (0x2028, 0x2029)])


def _class_escape(ch: str) -> tuple[CharSet, CharSet]:
    """``(narrow, wide)`` of ``\\d \\D \\w \\W \\s \\S``."""
    if ch in "dD":
        narrow, wide = _ASCII_DIGIT, _py_digit()
    elif ch in "wW":
        narrow, wide = _ASCII_WORD, _py_word()
    else:
        narrow, wide = cs_intersect(_ECMA_SPACE, _py_space()), cs_union(_ECMA_SPACE, _py_space())
    if ch.isupper():
        return cs_complement(wide), cs_complement(narrow)
    return narrow, wide


_CATEGORY_NAMES = {
    "Letter": "L", "Cased_Letter": "LC", "Uppercase_Letter": "Lu", "Lowercase_Letter": "Ll",
    "Titlecase_Letter": "Lt", "Modifier_Letter": "Lm", "Other_Letter": "Lo", "Mark": "M",
    "Nonspacing_Mark": "Mn", "Spacing_Mark": "Mc", "Enclosing_Mark": "Me", "Number": "N",
    "Decimal_Number": "Nd", "digit": "Nd", "Letter_Number": "Nl", "Other_Number": "No",
    "Punctuation": "P", "punct": "P", "Connector_Punctuation": "Pc", "Dash_Punctuation": "Pd",
    "Open_Punctuation": "Ps", "Close_Punctuation": "Pe", "Initial_Punctuation": "Pi",
    "Final_Punctuation": "Pf", "Other_Punctuation": "Po", "Symbol": "S", "Math_Symbol": "Sm",
    "Currency_Symbol": "Sc", "Modifier_Symbol": "Sk", "Other_Symbol": "So", "Separator": "Z",
    "Space_Separator": "Zs", "Line_Separator": "Zl", "Paragraph_Separator": "Zp", "Other": "C",
    "Control": "Cc", "cntrl": "Cc", "Format": "Cf", "Private_Use": "Co", "Unassigned": "Cn",
}  # fmt: skip


@cache
def _category(name: str) -> CharSet:
    """Code points of a Unicode general category (``L``, ``Lu``, ``Letter``, ``gc=Lu``, ...)."""
    name = name.split("=", 1)[1] if name.startswith(("gc=", "General_Category=")) else name
    code = _CATEGORY_NAMES.get(name, name)
    if code == "LC":
        return _scan(lambda c: unicodedata.category(c) in ("Lu", "Ll", "Lt"))
    if len(code) == 1 and code in "LMNPSZC":
        return _scan(lambda c: unicodedata.category(c)[0] == code)
    if len(code) == 2 and code[0] in "LMNPSZC":
        return _scan(lambda c: unicodedata.category(c) == code)
    raise RegexUnsupported(f"unknown Unicode property \\p{{{name}}} (general categories only)")


def _single(cp: int) -> tuple[CharSet, CharSet]:
    cs = ((cp, cp),)
    return cs, cs


# --- parser ------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0

    def error(self, msg: str) -> RegexUnsupported:
        return RegexUnsupported(f"pattern {self.src!r}: {msg} (at offset {self.i})")

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.src[j] if j < len(self.src) else ""

    def eat(self, s: str) -> bool:
        if self.src.startswith(s, self.i):
            self.i += len(s)
            return True
        return False

    def parse(self) -> Node:
        node = self.disjunction()
        if self.i < len(self.src):
            raise self.error(f"unbalanced {self.peek()!r}")
        return node

    def disjunction(self) -> Node:
        alts = [self.alternative()]
        while self.eat("|"):
            alts.append(self.alternative())
        return alt(*alts) if len(alts) > 1 else alts[0]

    def alternative(self) -> Node:
        parts: list[Node] = []
        while self.i < len(self.src) and self.peek() not in "|)":
            parts.append(self.term())
        return cat(*parts)

    def term(self) -> Node:
        c = self.peek()
        if c == "^":
            self.i += 1
            return self.no_quantifier(Chars(((BOS, BOS),)), "^")
        if c == "$":
            self.i += 1
            return self.no_quantifier(Chars(((EOS, EOS),)), "$")
        if self.src.startswith(("(?=", "(?!", "(?<=", "(?<!"), self.i):
            raise self.error("look-around assertions are not supported")
        if self.src.startswith(("\\b", "\\B"), self.i):
            raise self.error("word boundaries \\b \\B are not supported")
        atom = self.atom()
        return self.quantified(atom)

    def no_quantifier(self, node: Node, what: str) -> Node:
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self.quantifier_ahead()):
            raise self.error(f"a quantifier on the anchor {what} is not supported")
        return node

    def quantifier_ahead(self) -> bool:
        j = self.i + 1
        k = j
        while k < len(self.src) and self.src[k].isdigit():
            k += 1
        if k == j:
            return False
        if k < len(self.src) and self.src[k] == "}":
            return True
        if k < len(self.src) and self.src[k] == ",":
            k += 1
            while k < len(self.src) and self.src[k].isdigit():
                k += 1
            return k < len(self.src) and self.src[k] == "}"
        return False

    def quantified(self, atom: Node) -> Node:
        c = self.peek()
        if c == "*":
            lo, hi = 0, None
            self.i += 1
        elif c == "+":
            lo, hi = 1, None
            self.i += 1
        elif c == "?":
            lo, hi = 0, 1
            self.i += 1
        elif c == "{" and self.quantifier_ahead():
            self.i += 1
            lo = self.number()
            hi = lo
            if self.eat(","):
                hi = self.number() if self.peek().isdigit() else None
            self.eat("}")
            if hi is not None and hi < lo:
                raise self.error(f"quantifier {{{lo},{hi}}} out of order")
            if lo > MAX_COUNT or (hi is not None and hi > MAX_COUNT):
                raise self.error(f"repetition counts above {MAX_COUNT} are not supported")
        else:
            return atom
        self.eat("?")  # lazy: same set of matching strings
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self.quantifier_ahead()):
            raise self.error("nothing to repeat")
        return rep(atom, lo, hi)

    def number(self) -> int:
        j = self.i
        while self.peek().isdigit():
            self.i += 1
        return int(self.src[j : self.i])

    def atom(self) -> Node:
        c = self.peek()
        if c == "(":
            self.i += 1
            if self.eat("?:"):
                pass
            elif self.eat("?<"):
                end = self.src.find(">", self.i)
                if end < 0:
                    raise self.error("unterminated group name")
                self.i = end + 1
            elif self.peek() == "?":
                raise self.error("unsupported group syntax (?...")
            node = self.disjunction()
            if not self.eat(")"):
                raise self.error("missing )")
            return node
        if c == ".":
            self.i += 1
            return Chars(cs_complement(_LINE_TERMINATORS))
        if c == "[":
            return chars(self.char_class()[0])
        if c == "\\":
            narrow, _ = self.escape(in_class=False)
            return Chars(narrow)
        if c in "*+?":
            raise self.error("nothing to repeat")
        if c == "{" and self.quantifier_ahead():
            raise self.error("nothing to repeat")
        self.i += 1
        cp = ord(c)
        if 0xD800 <= cp <= 0xDBFF and 0xDC00 <= ord(self.peek() or "\0") <= 0xDFFF:
            cp = 0x10000 + ((cp - 0xD800) << 10) + (ord(self.peek()) - 0xDC00)
            self.i += 1
        return Chars(((cp, cp),))

    def hex(self, n: int) -> int:
        s = self.src[self.i : self.i + n]
        if len(s) != n or any(ch not in "0123456789abcdefABCDEF" for ch in s):
            raise self.error(f"expected {n} hex digits")
        self.i += n
        return int(s, 16)

    def escape(self, in_class: bool) -> tuple[CharSet, CharSet]:
        """Read ``\\...``: ``(narrow, wide)`` character sets."""
        self.i += 1
        c = self.peek()
        if not c:
            raise self.error("pattern ends with a backslash")
        self.i += 1
        if c in "dDwWsS":
            return _class_escape(c)
        if c in "pP":
            if not self.eat("{"):
                raise self.error("\\p needs {...}")
            end = self.src.find("}", self.i)
            if end < 0:
                raise self.error("unterminated \\p{")
            cs = _category(self.src[self.i : end])
            self.i = end + 1
            return (cs, cs) if c == "p" else (cs_complement(cs), cs_complement(cs))
        simple = {"t": 9, "n": 10, "v": 11, "f": 12, "r": 13}
        if c in simple:
            return _single(simple[c])
        if c == "b" and in_class:
            return _single(8)
        if c == "0" and not self.peek().isdigit():
            return _single(0)
        if c.isdigit():
            raise self.error("back-references are not supported")
        if c == "k" and self.peek() == "<":
            raise self.error("named back-references are not supported")
        if c == "c" and self.peek().isalpha() and self.peek().isascii():
            self.i += 1
            return _single(ord(self.src[self.i - 1]) % 32)
        if c == "x":
            return _single(self.hex(2))
        if c == "u":
            if self.eat("{"):
                end = self.src.find("}", self.i)
                cp = int(self.src[self.i : end], 16) if end > self.i else -1
                if cp < 0 or cp > MAX_CP:
                    raise self.error("bad \\u{...} escape")
                self.i = end + 1
                return _single(cp)
            cp = self.hex(4)
            if 0xD800 <= cp <= 0xDBFF and self.src.startswith("\\u", self.i):
                save = self.i
                self.i += 2
                low = self.hex(4)
                if 0xDC00 <= low <= 0xDFFF:
                    return _single(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00))
                self.i = save
            if 0xD800 <= cp <= 0xDFFF:
                raise self.error("a lone surrogate escape never matches decoded JSON text")
            return _single(cp)
        if c.isalnum() or c == "_":
            raise self.error(f"unknown escape \\{c}")
        return _single(ord(c))  # identity escape of a syntax character

    def char_class(self) -> tuple[CharSet, CharSet]:
        self.i += 1
        neg = self.eat("^")
        narrow: list[tuple[int, int]] = []
        wide: list[tuple[int, int]] = []
        while True:
            c = self.peek()
            if not c:
                raise self.error("missing ]")
            if c == "]":  # ECMA: ']' always closes, so [] matches nothing and [^] everything
                self.i += 1
                break
            lo_n, lo_w, lo_cp = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                save = self.i
                self.i += 1
                hi_n, hi_w, hi_cp = self.class_atom()
                if lo_cp is not None and hi_cp is not None:
                    if hi_cp < lo_cp:
                        raise self.error("range out of order in character class")
                    narrow.append((lo_cp, hi_cp))
                    wide.append((lo_cp, hi_cp))
                    continue
                self.i = save  # Annex B: a class escape next to '-' makes '-' a literal
            narrow.extend(lo_n)
            wide.extend(lo_w)
        n, w = charset(narrow), charset(wide)
        if neg:
            return cs_complement(w), cs_complement(n)
        return n, w

    def class_atom(self) -> tuple[CharSet, CharSet, int | None]:
        c = self.peek()
        if c == "\\":
            n, w = self.escape(in_class=True)
            single = n[0][0] if len(n) == 1 and n[0][0] == n[0][1] and n == w else None
            return n, w, single
        self.i += 1
        cp = ord(c)
        if 0xD800 <= cp <= 0xDBFF and 0xDC00 <= ord(self.peek() or "\0") <= 0xDFFF:
            cp = 0x10000 + ((cp - 0xD800) << 10) + (ord(self.peek()) - 0xDC00)
            self.i += 1
        return ((cp, cp),), ((cp, cp),), cp


# --- anchors and the "matches somewhere" language -------------------------------------------
def _has_marker(node: Node) -> bool:
    if isinstance(node, Chars):
        return node.cs[-1][1] >= BOS
    if isinstance(node, Rep):
        return _has_marker(node.body)
    return any(_has_marker(p) for p in node.parts)  # type: ignore[attr-defined]


def _is_marker(node: Node, m: int) -> bool:
    return isinstance(node, Chars) and node.cs == ((m, m),)


def _simple_anchors(node: Node) -> Node | None:
    """Fast path: each top-level alternative is ``[^] core [$]`` with no anchor in ``core``."""
    out = []
    for a in node.parts if isinstance(node, Alt) else (node,):
        parts = list(a.parts) if isinstance(a, Cat) else [a]
        start = bool(parts) and _is_marker(parts[0], BOS)
        if start:
            parts = parts[1:]
        end = bool(parts) and _is_marker(parts[-1], EOS)
        if end:
            parts = parts[:-1]
        core = cat(*parts)
        if _has_marker(core):
            return None
        out.append(cat(EPS if start else any_string(), core, EPS if end else any_string()))
    return alt(*out)


def _marker_in_repeat(node: Node, under: bool = False) -> bool:
    if isinstance(node, Chars):
        return under and node.cs[-1][1] >= BOS
    if isinstance(node, Rep):
        return _marker_in_repeat(node.body, True)
    return any(_marker_in_repeat(p, under) for p in node.parts)  # type: ignore[attr-defined]


def _general_anchors(node: Node) -> Node:
    """``{w : BOS w EOS in L(.* R .*)}`` through a DFA, for anchors anywhere."""
    sigma = Rep(Chars(UNIVERSE + ((BOS, EOS),)), 0, None)
    d = fa.determinize(cat(sigma, node, sigma))
    s1 = d.step(0, BOS)
    if s1 < 0:
        return Alt(())
    # re-root at s1, accept where EOS leads to acceptance, drop marker edges
    n = d.num_states
    trans = []
    for s in range(n):
        trans.append([(lo, min(hi, MAX_CP), t) for lo, hi, t in d.trans[s] if lo <= MAX_CP])
    accept = [d.step(s, EOS) >= 0 and d.accept[d.step(s, EOS)] for s in range(n)]
    order = [s1] + [s for s in range(n) if s != s1]
    pos = {s: k for k, s in enumerate(order)}
    sub = fa.DFA([[(lo, hi, pos[t]) for lo, hi, t in trans[s]] for s in order], [accept[s] for s in order])
    return fa.to_tree(sub)


@lru_cache(maxsize=MEMO_SIZE)
def pattern_language(pattern: str) -> Node:
    """The strings in which ``pattern`` matches somewhere, as a tree over code points."""
    if not isinstance(pattern, str):
        raise RegexUnsupported(f"pattern must be a string, got {pattern!r}")
    node = _Parser(pattern).parse()
    if _marker_in_repeat(node):
        raise RegexUnsupported(f"pattern {pattern!r}: an anchor inside a repeated group is not supported")
    fast = _simple_anchors(node)
    return fast if fast is not None else _general_anchors(node)


def python_regex(pattern: str) -> str:
    """The decoded-string language of ``pattern`` as a Python ``re`` pattern for ``fullmatch`` (tests)."""
    from decoding.grammar.json_schema.encode import plain_regex

    return plain_regex(pattern_language(pattern))

