"""Lexer-context DFAs and their whole-vocabulary runs, shared by every grammar of the process.

A lexer context is a set of terminals; its DFA (subset construction) and the run of that DFA
over the whole vocabulary from a state (:meth:`~decoding.grammar.tokens.TokenMatrix.run_all`)
depend only on the terminals' languages, not on the grammar. JSON grammars share many contexts
(``{"{", WS}`` opens every object schema; the untyped value context recurs), so the first mask
of a new grammar often finds both built. Entries are keyed by the context's regexes (in terminal
order) and which of them are ignored; accept bits are local (bit ``k``: the ``k``-th terminal of
the context) and each grammar maps them to its own terminal indices. At most
:data:`MAX_CONTEXTS` contexts are kept (least recently used dropped).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from decoding.grammar.dfa import ByteDFA

MAX_CONTEXTS = 32
MAX_RUNS_PER_CONTEXT = 4

ContextKey = tuple[tuple[str, ...], int]


class ContextEntry:
    """One context's DFA (local accept bits) and its cached vocabulary runs."""

    __slots__ = ("dfa", "runs")

    def __init__(self, dfa: ByteDFA) -> None:
        self.dfa = dfa
        self.runs: dict[tuple[int, int], tuple[object, np.ndarray, list]] = {}  # (q, offset) -> (tokens, end, groups)

    def run(self, tokens: object, q: int, offset: int, compute: Callable[[], tuple[np.ndarray, list]]) -> tuple[np.ndarray, list]:
        """``(end, groups)`` of the run from ``q`` at ``offset`` over ``tokens`` (computed once)."""
        hit = self.runs.get((q, offset))
        if hit is not None and hit[0] is tokens:
            return hit[1], hit[2]
        end, groups = compute()
        if len(self.runs) >= MAX_RUNS_PER_CONTEXT:
            self.runs.pop(next(iter(self.runs)))
        self.runs[(q, offset)] = (tokens, end, groups)
        return end, groups


_LOCK = threading.Lock()
_ENTRIES: OrderedDict[ContextKey, ContextEntry] = OrderedDict()


def context_entry(key: ContextKey, build: Callable[[], ByteDFA]) -> ContextEntry:
    """The shared entry of context ``key``, its DFA made by ``build()`` on first use."""
    with _LOCK:
        entry = _ENTRIES.get(key)
        if entry is not None:
            _ENTRIES.move_to_end(key)
            return entry
    entry = ContextEntry(build())  # outside the lock: building may take a while
    with _LOCK:
        _ENTRIES[key] = entry
        _ENTRIES.move_to_end(key)
        while len(_ENTRIES) > MAX_CONTEXTS:
            _ENTRIES.popitem(last=False)
    return entry


def clear_contexts() -> None:
    """Forget every shared context (for tests and memory)."""
    with _LOCK:
        _ENTRIES.clear()
