"""Terminal automata shared by every grammar of the process: each distinct regex is built once.

JSON grammars repeat the same terminals (strings, numbers, formats, common property names), and
turning a regex into a byte NFA (parsing it, splitting its classes into UTF-8 byte ranges,
Thompson's construction) is a large part of compiling a small grammar. Every regex is therefore
added once to one process-wide :class:`~decoding.grammar.regex_bytes.ByteNFA`; a grammar only
records each terminal's ``(start, accept)`` states in it. Thompson fragments never gain edges
after they are built, so sharing them changes no automaton: the subset construction from a
grammar's start states sees exactly the states of its own terminals. When the shared NFA grows
past :data:`MAX_SHARED_STATES` a fresh one is started (grammars keep the one they were built on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from decoding.grammar.regex_bytes import ByteNFA, RegexError, max_width, parse_regex

MAX_SHARED_STATES = 500_000


class _Shared:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nfa = ByteNFA()
        self.states: dict[str, tuple[int, int, int]] = {}  # regex -> (start, accept, max width)


_SHARED = _Shared()


def terminal_automata(
    regexes: Sequence[str], builders: Mapping[str, Callable[[ByteNFA], tuple[int, int, int]]] | None = None
) -> tuple[ByteNFA, list[tuple[int, int, int]]]:
    """The shared NFA and ``(start, accept, max width)`` of each regex in it (built on first use).

    All regexes of one call live in the returned NFA. ``builders`` may give, per regex, a function
    that adds the same language to an NFA faster than parsing the regex (and returns its
    ``(start, accept, max width)``); the regex stays the cache key.

    Raises:
        RegexError: a regex the byte automaton cannot express (nothing of it is kept); its
            ``pattern`` attribute is that regex.
    """
    sh = _SHARED
    with sh.lock:
        missing = [r for r in dict.fromkeys(regexes) if r not in sh.states]
        if missing and len(sh.nfa.eps) > MAX_SHARED_STATES:
            sh.nfa, sh.states = ByteNFA(), {}
            missing = list(dict.fromkeys(regexes))
        nfa = sh.nfa
        n_before = len(nfa.eps)
        try:
            for r in missing:
                n0 = len(nfa.eps)
                try:
                    build = builders.get(r) if builders else None
                    if build is not None:
                        s, e, w = build(nfa)
                    else:
                        parsed = parse_regex(r)
                        s, e = nfa.add_parsed(parsed)
                        w = max_width(parsed)
                except RegexError as err:
                    nfa.truncate(n0)  # a failed build only touched its own new states
                    err.pattern = r  # type: ignore[attr-defined]
                    raise
                sh.states[r] = (s, e, w)
        finally:
            nfa.seal(n_before)  # finished fragments: tuples the collector soon stops walking
        return nfa, [sh.states[r] for r in regexes]


def clear_terminal_automata() -> None:
    """Start a fresh shared NFA (for tests and memory; grammars built before keep theirs)."""
    with _SHARED.lock:
        _SHARED.nfa, _SHARED.states = ByteNFA(), {}
