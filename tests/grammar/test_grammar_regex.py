"""Regex -> byte DFA agrees with Python's ``re`` on random strings, and accepts only valid UTF-8."""

from __future__ import annotations

import random
import re
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoding.grammar.dfa import DEAD, START, build_dfa
from decoding.grammar.regex_bytes import ByteNFA, RegexError, byte_edges, utf8_sequences

PATTERNS = [
    r'"(?:[^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})*"',
    r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?",
    r"(?i:select|from)",
    r"[a-zé-ü_]\w{0,3}",
    r"\d+|\s+",
    r"(ab|a)*c?",
    r"[^abc]{2,3}",
    r".x",
    r"(?s:.)x",
]
ALPHABET = st.sampled_from(list('abcSELfromé日\U0001f600"\\ 0123456789.-+eE\n\t\x01xü_'))


@cache
def _dfa(pattern: str):
    nfa = ByteNFA()
    s, e = nfa.add_regex(pattern)
    return build_dfa(nfa, [s], {e: 1})


def _matches(d, data: bytes) -> bool:
    q = START
    for b in data:
        q = d.rows[q][b]
        if q == DEAD:
            return False
    return bool(d.accepts[q])


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=st.text(ALPHABET, max_size=8))
def test_dfa_matches_python_re(pattern: str, text: str) -> None:
    d = _dfa(pattern)
    assert _matches(d, text.encode()) == bool(re.fullmatch(pattern, text))


def test_only_valid_utf8() -> None:
    d = _dfa(r"(?s:.)")
    for cp in [0, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF]:
        assert _matches(d, chr(cp).encode())
    for bad in [b"\xed\xa0\x80", b"\xc0\x80", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xff", b"\x80"]:
        assert not _matches(d, bad)


def test_utf8_sequences_cover_exactly() -> None:
    for lo, hi in [(0, 0x10FFFF), (0x7F, 0x801), (0xD000, 0xE100), (0x1F600, 0x1F64F)]:
        seqs = utf8_sequences(lo, hi)
        count = 0
        for seq in seqs:
            n = 1
            for a, b in seq:
                n *= b - a + 1
            count += n
        surrogates = max(0, min(hi, 0xDFFF) - max(lo, 0xD800) + 1)
        assert count == hi - lo + 1 - surrogates


@pytest.mark.parametrize("pattern", [r"a(?=b)", r"(?<!a)b", r"a*?", r"(a)\1", r"^a", r"a$"])
def test_unsupported_constructs_raise(pattern: str) -> None:
    with pytest.raises(RegexError):
        ByteNFA().add_regex(pattern)


def _reference_dfa_language(nfa: ByteNFA, starts: list[int], tags: dict[int, int], data: bytes) -> int:
    """The terminals (bit mask) that match all of ``data``, by simulating the NFA byte by byte."""

    def closure(states: set[int]) -> set[int]:
        stack, seen = list(states), set(states)
        while stack:
            for t in nfa.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return seen

    cur = closure(set(starts))
    for b in data:
        cur = closure({d for s in cur for lo, hi, d in byte_edges(nfa.edges[s]) if lo <= b <= hi})
    return sum(1 << tags[s] for s in cur if s in tags)


def test_multi_terminal_context_equals_nfa_simulation() -> None:
    """Overlapping byte ranges of several terminals in one lexer context (the sweep over the byte axis)."""
    patterns = [r"[a-z]+", r"[a-f0-9]{1,4}", r"if|in", r"[^\x00-\x1f]", r"\d+(\.\d*)?", r"(?i:ab)c?"]
    nfa = ByteNFA()
    starts, tags = [], {}
    for i, p in enumerate(patterns):
        s, e = nfa.add_regex(p)
        starts.append(s)
        tags[e] = i
    d = build_dfa(nfa, starts, {e: 1 << i for e, i in tags.items()})
    rng = random.Random(0)
    alphabet = b"abcfinxzAB0129.\x01\xc3\xa9 "
    for _ in range(3000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        q = START
        for b in data:
            q = d.rows[q][b]
            if q == DEAD:
                break
        got = 0 if q == DEAD else d.accepts[q]
        assert got == _reference_dfa_language(nfa, starts, tags, data), data
