"""The string and number languages under the JSON Schema converter, checked against references.

* ``pattern``: the ECMA-262 translation agrees with Python's ``re.search`` wherever the two
  engines agree (ASCII text without carriage returns), and never matches where Python does not.
* JSON spelling: a terminal built from a tree accepts ``json.dumps(s)`` iff the tree matches ``s``.
* Numbers: the numeral regex of a constraint set accepts a numeral iff its exact value is in the set;
  exclusive bounds hold under Python's float comparison too.
* Formats and property-name complements: fixed examples.
"""

from __future__ import annotations

import json
import math
import random
import re
from fractions import Fraction

import pytest
from lark import Lark

from decoding.grammar.json_schema import automaton as fa
from decoding.grammar.json_schema.ecma import RegexUnsupported, pattern_language
from decoding.grammar.json_schema.encode import json_string_regex, plain_regex
from decoding.grammar.json_schema.formats import format_language
from decoding.grammar.json_schema.keys import KeyLang, not_names
from decoding.grammar.json_schema.numbers import NumAtom, float_safe_upper
from decoding.grammar.json_schema.strings import StrAtom, dfa_of

PATTERNS = [
    "^[a-z]+$", "a", "^a|b$", "(^a|b)c$", "^(ab|c)*$", "^\\w+@\\w+\\.\\w{2,}$", "x.?y", "^.$", "[^a-c]{2}",
    "^\\d{3}-\\d{2}$", "^$", "^(?:a$|b)", "\\s", "[\\]\\-^]", "a{2,3}?", "(?<n>ab)+", "^[]", "[^]", "\\/", "\\x41\\u0042",
]  # fmt: skip
ALPHABET = "abcxy@.-_ ]^\t1AB"


def _words(seed: int, n: int = 400) -> list[str]:
    rng = random.Random(seed)
    return [""] + ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 9))) for _ in range(n)]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_language_matches_python_search_on_ascii(pattern: str) -> None:
    d = dfa_of(pattern_language(pattern))
    py = pattern.replace("[^]", "[\\s\\S]").replace("^[]", "^(?!)").replace("(?<n>", "(?P<n>")
    for w in _words(len(pattern)):
        assert d.matches(w) == (re.search(py, w) is not None), (pattern, w)


def test_pattern_classes_are_the_intersection_of_ecma_and_python() -> None:
    assert not dfa_of(pattern_language("^\\d$")).matches("٣")  # ECMA: ASCII digits only
    assert not dfa_of(pattern_language("^\\D$")).matches("٣")  # Python: not a non-digit
    assert not dfa_of(pattern_language("^.$")).matches("\r")  # ECMA: line terminator
    assert not dfa_of(pattern_language("^a$")).matches("a\n")  # ECMA: $ is the very end
    assert dfa_of(pattern_language("^.$")).matches("😀")  # code points, like Python and the u flag


@pytest.mark.parametrize("pattern", ["(?=a)", "(?!a)b", "(?<=a)b", "(a)\\1", "\\bword", "(^a)*", "a**", "[z-a]"])
def test_unsupported_or_malformed_patterns_raise(pattern: str) -> None:
    with pytest.raises(RegexUnsupported):
        pattern_language(pattern)


def _terminal(regex: str) -> Lark:
    return Lark(f"start: S\nS: /{regex}/\n", parser="lalr")


@pytest.mark.parametrize("pattern", ["^[a-z\"\\\\/]*$", "^\\t\\n$", "é|μ", "^[\\x00-\\x1f]+$", "^\\u0001.$", "/"])
def test_json_spelling_accepts_exactly_the_strings_of_the_tree(pattern: str) -> None:
    node = pattern_language(pattern)
    lark = _terminal(json_string_regex(node))
    rng = random.Random(7)
    alphabet = ["a", "z", '"', "\\", "/", "\t", "\n", "\x01", "\x1f", "é", "μ", "😀", "\x7f"]
    words = [""] + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    for w in words:
        try:
            lark.parse(json.dumps(w, ensure_ascii=False))
            ok = True
        except Exception:  # noqa: BLE001 - lark's parse errors
            ok = False
        assert ok == dfa_of(node).matches(w), (pattern, w)
    # the other spellings of escapable characters are accepted too
    if dfa_of(node).matches("/"):
        lark.parse('"\\/"')


def _numerals(seed: int) -> list[str]:
    rng = random.Random(seed)
    out = set()
    for _ in range(500):
        ip = rng.choice(["0", str(rng.randint(1, 9)), str(rng.randint(10, 250))])
        fp = rng.choice(["", "." + str(rng.randint(0, 99)).rjust(rng.randint(1, 3), "0"), ".0", ".5", ".50"])
        s = rng.choice(["", "-"]) + ip + fp
        if not (s.startswith("-") and Fraction(s) == 0):
            out.add(s)
    return sorted(out)


@pytest.mark.parametrize("seed", range(6))
def test_number_regex_accepts_exactly_the_values_of_the_set(seed: int) -> None:
    rng = random.Random(seed)
    numerals = _numerals(seed)
    for _ in range(40):
        kw: dict = {}
        if rng.random() < 0.7:
            kw.update(lo=Fraction(str(rng.choice([-7, -2.5, 0, 1, 1.25, 3, 10, 99.5]))), lo_excl=rng.random() < 0.5)
        if rng.random() < 0.7:
            kw.update(hi=Fraction(str(rng.choice([-1, 0, 0.5, 2, 7.75, 12, 150]))), hi_excl=rng.random() < 0.5)
        if rng.random() < 0.3:
            kw["integer"] = True
        if rng.random() < 0.3:
            kw["multiples"] = (Fraction(rng.choice(["1", "2", "3", "0.5", "0.25"])),)
        if rng.random() < 0.15:
            kw["nonint"] = True
        if rng.random() < 0.15:
            kw["not_values"] = frozenset({Fraction(rng.choice(["0", "2", "0.5"]))})
        atom = NumAtom(**kw)
        rx = re.compile(plain_regex(atom.tree(float_bounds=False)))
        for s in numerals:
            want = atom.contains(Fraction(s)) and not (atom.integer and "." in s)
            assert (rx.fullmatch(s) is not None) == want, (atom, s)


@pytest.mark.parametrize("bound", [0, 0.1, 1.5, 3, 1e20, 2**60 + 1, -0.3])
@pytest.mark.parametrize("exclusive", [False, True])
def test_float_safe_bounds_hold_in_python_float_comparisons(bound, exclusive: bool) -> None:
    b = Fraction(repr(bound)) if isinstance(bound, float) else Fraction(bound)
    c = float_safe_upper(b, exclusive)
    assert c <= b and (c < b or not exclusive)
    assert float(c) < bound if exclusive else float(c) <= bound


FORMATS = {
    "date": (["2000-02-29", "1999-12-31"], ["1900-02-29", "2001-13-01", "0000-01-01", "2020-1-01"]),
    "date-time": (["2020-01-01T00:00:00Z", "2020-01-01t10:11:12.5+05:30"], ["2020-01-01 00:00:00Z", "2020-01-01T24:00:00Z"]),
    "time": (["23:59:59Z", "00:00:00.000-12:00"], ["23:59:60Z", "12:00:00"]),
    "duration": (["P1D", "PT1H2M", "P2W"], ["P", "PT", "P1H"]),
    "email": (["a.b+c@ex-ample.co"], ["a@", "@b.co", "a..b@c.d", "a b@c.d"]),
    "hostname": (["a", "a-b.example.org"], ["-a", "a-", "a..b", "ab--cd.org", "a" * 64]),
    "ipv4": (["0.0.0.0", "255.255.255.255"], ["256.0.0.0", "01.0.0.0", "1.2.3"]),
    "ipv6": (["::", "::1", "1:2:3:4:5:6:7:8", "fe80::1:2", "::ffff:1.2.3.4"], ["1:2:3:4:5:6:7:8:9", ":::", "1::2::3", "fe80::1%eth0"]),
    "uuid": (["00000000-0000-0000-0000-000000000000"], ["0000000-0000-0000-0000-000000000000"]),
    "uri": (["http://a.b/c?d#e", "urn:isbn:123", "mailto:a@b.c"], ["/relative", "http://a b", "1http://x"]),
    "uri-reference": (["/relative", "#frag", "http://x"], ["\\\\x", "a b"]),
    "json-pointer": (["", "/a~0b/c~1d"], ["a", "/~2"]),
    "relative-json-pointer": (["0", "1/a", "2#"], ["-1", "01", "#"]),
    "regex": (["^[a-z]+$", "a{2}"], ["(", "[a", "a{"]),
    "uri-template": (["http://x/{id}", "{+path}/here"], ["{", "http://x/{a b}"]),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_format_languages(name: str) -> None:
    d = dfa_of(format_language(name))
    good, bad = FORMATS[name]
    assert all(d.matches(s) for s in good), name
    assert not any(d.matches(s) for s in bad), name


def test_unknown_formats_are_annotations() -> None:
    assert format_language("int32") is None and format_language("binary") is None


def test_property_name_complements() -> None:
    names = frozenset({"a", "ab", "", "x\"y"})
    d = dfa_of(not_names(names))
    for w in ["a", "ab", "", 'x"y']:
        assert not d.matches(w)
    for w in ["b", "abc", "aa", "x", "x\"", "é"]:
        assert d.matches(w)
    lang = KeyLang(inside=frozenset({pattern_language("^x-")}), names=frozenset({"x-a"}))
    assert lang.contains("x-b") and not lang.contains("x-a") and not lang.contains("y")
    assert dfa_of(lang.tree()).matches("x-b") and not dfa_of(lang.tree()).matches("x-a")


def test_property_name_complements_exhaustively() -> None:
    """Random name sets (shared prefixes, names inside names, non-ASCII): every short word is in
    the complement iff it is not a name."""
    import itertools
    import random

    rng = random.Random(0)
    alphabet = "abé\"z"
    words = ["".join(w) for n in range(5) for w in itertools.product(alphabet, repeat=n)]
    for _ in range(30):
        names = frozenset(rng.choice(words[:156]) for _ in range(rng.randint(1, 6)))
        d = dfa_of(not_names(names))
        assert all(d.matches(w) == (w not in names) for w in words), names


@pytest.mark.parametrize(
    ("pattern", "lo", "hi", "example"),
    [
        ("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", 0, 63, "a-b0"),
        ("^https?://.*$", 10, 20, "https://ab"),
        ("a", 2, 5, "bab"),
        ("^(ab|c)*$", 3, 9, "abcab"),
        ("^[A-Z]{2}[0-9]+$", 0, 4, "AB01"),
        ("^[\\w /-]+\\.[0-9a-zA-Z]+$", 1, 1024, "my file.txt"),
    ],
)
def test_pattern_with_lengths_is_sound(pattern: str, lo: int, hi: int, example: str) -> None:
    atom = StrAtom(lo, hi, frozenset({pattern_language(pattern)}))
    rx = re.compile(plain_regex(atom.tree()))
    assert rx.fullmatch(example)
    rng = random.Random(3)
    alphabet = "abc-:/.ABhtps01 "
    for _ in range(3000):
        w = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        if rx.fullmatch(w):
            assert re.search(pattern, w) and lo <= len(w) <= hi, (pattern, w)


def test_dfa_to_tree_round_trip() -> None:
    for pattern in ["^(a|b)*abb$", "^(ab)*(c|d)+$", "x.?y"]:
        t = pattern_language(pattern)
        d = fa.determinize(t)
        back = fa.to_tree(d)
        for w in _words(1, 200):
            assert dfa_of(back).matches(w) == d.matches(w), (pattern, w)
    assert math.isfinite(fa.MAX_TREE_SIZE)


def test_unicode_classes_found_by_re_equal_str_methods() -> None:
    """``\\d \\w \\s`` of Python's ``re``, read off by ``re`` itself, are the ``str``-method sets."""
    from decoding.grammar.json_schema import ecma

    assert ecma._py_digit() == ecma._scan(str.isdecimal)
    assert ecma._py_word() == ecma._scan(lambda c: c.isalnum() or c == "_")
    assert ecma._py_space() == ecma._scan(str.isspace)
