"""Byte DFAs for a set of lexer terminals (subset construction, Rabin & Scott 1959).

One DFA recognises the union of the terminals a lexer context allows. State ``0`` is the dead
state (no terminal can match any more), state ``1`` is the start (empty lexeme). Per state we
keep which terminals match exactly here (``accepts``) and which can still be reached
(``reach``), both as bitmasks over the grammar's terminal indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from decoding.grammar.regex_bytes import ByteNFA, byte_edges

DEAD, START = 0, 1


@dataclass(frozen=True)
class ByteDFA:
    """A trimmed DFA over bytes.

    Attributes:
        delta: ``(S, 256)`` int32 transition table; row 0 (dead) maps everything to 0.
        rows: ``delta`` as Python tuples (fast scalar stepping; tuples of ``int``, which the cyclic
            collector stops walking after one pass, where 256-entry lists would be walked by every
            collection for as long as the lexer context is cached).
        accepts: ``accepts[s]`` bitmask of terminals whose match ends exactly at ``s``.
        reach: ``reach[s]`` bitmask of terminals still reachable from ``s`` (including ``accepts``).
    """

    delta: np.ndarray
    rows: list[tuple[int, ...]]
    accepts: list[int]
    reach: list[int]

    @property
    def num_states(self) -> int:
        return int(self.delta.shape[0])


def _closure(nfa: ByteNFA, states: Sequence[int], accepting: dict[int, int]) -> frozenset[int]:
    """The epsilon closure of ``states``, keeping only the states that matter: those with byte
    edges and the accepting ones. Two closures with the same such states have the same future,
    so keying DFA states by them merges states a plain subset construction keeps apart (the
    branch ends of an alternation all flowing into one loop, say)."""
    seen = set(states)
    stack = list(states)
    eps, edges = nfa.eps, nfa.edges
    while stack:
        s = stack.pop()
        for t in eps[s]:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return frozenset(s for s in seen if edges[s] or s in accepting)


def build_dfa(nfa: ByteNFA, starts: Sequence[int], tag_of_accept: dict[int, int]) -> ByteDFA:
    """Subset construction from ``starts`` (one start state per terminal).

    Args:
        nfa: the shared NFA of all terminals.
        starts: NFA start states of the terminals in this lexer context.
        tag_of_accept: NFA accept state -> bitmask of the terminals that end there (bit ``i`` is
            terminal ``i`` of the masks).
    """
    first = _closure(nfa, starts, tag_of_accept)
    index: dict[frozenset[int], int] = {first: 0}
    sets = [first]
    trans: list[list[tuple[int, int, int]]] = []  # per raw state: (lo, hi_exclusive, raw target)
    closures: dict[frozenset[int], frozenset[int]] = {}  # NFA targets -> their closure (many byte ranges repeat)
    i = 0
    while i < len(sets):
        # Sweep the byte axis once: an edge (lo, hi, d) is active on [lo, hi]; every elementary
        # interval between consecutive bounds is covered whole by exactly the active edges.
        opens: dict[int, list[int]] = {}
        shuts: dict[int, list[int]] = {}
        for s in sets[i]:
            for lo, hi, d in byte_edges(nfa.edges[s]):
                opens.setdefault(lo, []).append(d)
                shuts.setdefault(hi + 1, []).append(d)
        bounds = sorted(opens.keys() | shuts.keys())
        active: dict[int, int] = {}  # NFA target -> number of active edges to it
        row: list[tuple[int, int, int]] = []
        for a, b in zip(bounds, bounds[1:], strict=False):
            for d in shuts.get(a, ()):
                active[d] -= 1
                if not active[d]:
                    del active[d]
            for d in opens.get(a, ()):
                active[d] = active.get(d, 0) + 1
            if not active:
                continue
            key = frozenset(active)
            tgt = closures.get(key)
            if tgt is None:
                tgt = closures[key] = _closure(nfa, list(key), tag_of_accept)
            j = index.get(tgt)
            if j is None:
                j = index[tgt] = len(sets)
                sets.append(tgt)
            row.append((a, b, j))
        trans.append(row)
        i += 1
    n = len(sets)
    accepts = [0] * n
    for k, st in enumerate(sets):
        for s in st:
            tag = tag_of_accept.get(s)
            if tag is not None:
                accepts[k] |= tag
    reach = list(accepts)
    preds: list[list[int]] = [[] for _ in range(n)]
    for k, row in enumerate(trans):
        for _, _, j in row:
            preds[j].append(k)
    work = [k for k in range(n) if reach[k]]
    while work:  # backward propagation of reachable terminals
        j = work.pop()
        for k in preds[j]:
            new = reach[k] | reach[j]
            if new != reach[k]:
                reach[k] = new
                work.append(k)
    # renumber: dead = 0, start = 1, then the other live states
    new_id = {0: START}  # the start is kept even when nothing can match
    for k in range(1, n):
        if reach[k]:
            new_id[k] = len(new_id) + 1
    size = len(new_id) + 1
    delta = np.zeros((size, 256), dtype=np.int32)
    acc = [0] * size
    rch = [0] * size
    for k, nk in new_id.items():
        acc[nk], rch[nk] = accepts[k], reach[k]
        for a, b, j in trans[k]:
            if j in new_id:
                delta[nk, a:b] = new_id[j]
    return ByteDFA(delta, list(map(tuple, delta.tolist())), acc, rch)
