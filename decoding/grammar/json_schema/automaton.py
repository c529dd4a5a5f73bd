"""Finite automata over code-point intervals: the operations that regular expressions lack.

Intersections (``pattern`` with ``format``, ``allOf`` of patterns), complements (``not``,
property names outside ``properties``), emptiness and disjointness checks (``oneOf``) are done on
DFAs and turned back into a tree by state elimination (Brzozowski & McCluskey 1963).

* NFA: Thompson's construction (Thompson 1968) from a :mod:`.regex_ast` tree.
* DFA: subset construction (Rabin & Scott 1959); a state's transitions are sorted disjoint
  intervals ``(lo, hi, target)``; a missing interval goes to an implicit dead state.
* Minimisation: Moore's partition refinement on trimmed DFAs.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from decoding.grammar.json_schema.regex_ast import (
    EPS,
    NOTHING,
    UNIVERSE,
    Alt,
    Cat,
    Chars,
    CharSet,
    Node,
    Rep,
    alt,
    cat,
    charset,
    rep,
)

MAX_NFA_STATES = 200_000
MAX_DFA_STATES = 20_000
MAX_TREE_SIZE = 20_000
MAX_TREE_DEPTH = 120
MAX_ELIMINATION_STATES = 3000  # state elimination is quadratic: bigger DFAs are refused

Trans = list[tuple[int, int, int]]


class TooLarge(ValueError):
    """An automaton or a regular expression built from it would exceed the size caps."""


# --- NFA --------------------------------------------------------------------------------------
def thompson_repeat(nfa: Any, build: Callable[[Node, int, int], None], node: Rep, src: int, dst: int) -> None:
    """``node.body`` ``node.lo`` to ``node.hi`` times from ``src`` to ``dst`` (Thompson 1968).

    ``nfa`` has ``new()`` (a fresh state) and ``eps`` (epsilon successor lists); ``build(body, a, b)``
    adds one copy of the body from ``a`` to ``b``. Only edges out of ``src`` and into ``dst`` are
    added there (shared by the code-point NFA here and the byte NFA of :mod:`.tree_nfa`).
    """
    cur = src
    for _ in range(node.lo):
        nxt = nfa.new()
        build(node.body, cur, nxt)
        cur = nxt
    if node.hi is None:
        loop = nfa.new()
        nfa.eps[cur].append(loop)
        back = nfa.new()
        build(node.body, loop, back)
        nfa.eps[back].append(loop)
        nfa.eps[loop].append(dst)
        return
    for _ in range(node.hi - node.lo):
        nxt = nfa.new()
        nfa.eps[cur].append(dst)
        build(node.body, cur, nxt)
        cur = nxt
    nfa.eps[cur].append(dst)


class _NFA:
    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[CharSet, int]]] = []

    def new(self) -> int:
        if len(self.eps) >= MAX_NFA_STATES:
            raise TooLarge(f"the regular expression needs more than {MAX_NFA_STATES} automaton states")
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def build(self, node: Node, src: int, dst: int) -> None:
        if isinstance(node, Chars):
            self.edges[src].append((node.cs, dst))
        elif isinstance(node, Cat):
            cur = src
            for k, p in enumerate(node.parts):
                nxt = dst if k == len(node.parts) - 1 else self.new()
                self.build(p, cur, nxt)
                cur = nxt
            if not node.parts:
                self.eps[src].append(dst)
        elif isinstance(node, Alt):
            for p in node.parts:
                a = self.new()
                self.eps[src].append(a)
                self.build(p, a, dst)
        elif isinstance(node, Rep):
            thompson_repeat(self, self.build, node, src, dst)
        else:
            raise TypeError(node)

    def closure(self, states: Iterable[int]) -> frozenset[int]:
        seen = set(states)
        stack = list(seen)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)


# --- DFA --------------------------------------------------------------------------------------
@dataclass
class DFA:
    """A partial DFA: start state 0, ``trans[s]`` sorted disjoint ``(lo, hi, target)``."""

    trans: list[Trans]
    accept: list[bool]

    @property
    def num_states(self) -> int:
        return len(self.accept)

    def step(self, s: int, cp: int) -> int:
        """Next state, or -1 (dead)."""
        row = self.trans[s]
        k = bisect_right(row, (cp, 1 << 30, 1 << 30)) - 1
        if k >= 0 and row[k][0] <= cp <= row[k][1]:
            return row[k][2]
        return -1

    def matches(self, text: str | Iterable[int]) -> bool:
        s = 0
        for c in text:
            s = self.step(s, ord(c) if isinstance(c, str) else c)
            if s < 0:
                return False
        return self.accept[s]


def _merge(segments: list[tuple[int, int, int]]) -> Trans:
    """Merge adjacent intervals that go to the same target."""
    out: Trans = []
    for lo, hi, t in segments:
        if out and out[-1][2] == t and out[-1][1] + 1 == lo:
            out[-1] = (out[-1][0], hi, t)
        else:
            out.append((lo, hi, t))
    return out


def determinize(node: Node) -> DFA:
    """The DFA of the words of ``node``."""
    nfa = _NFA()
    s, e = nfa.new(), nfa.new()
    nfa.build(node, s, e)
    first = nfa.closure([s])
    index = {first: 0}
    sets = [first]
    trans: list[Trans] = []
    accept: list[bool] = []
    closures: dict[frozenset[int], frozenset[int]] = {}  # active NFA targets -> their closure (sets recur)
    i = 0
    while i < len(sets):
        cur = sets[i]
        accept.append(e in cur)
        events: list[tuple[int, int, int]] = []  # (point, +1/-1, target)
        for st in cur:
            for cs, t in nfa.edges[st]:
                for lo, hi in cs:
                    events.append((lo, 1, t))
                    events.append((hi + 1, -1, t))
        events.sort()
        active: dict[int, int] = {}
        segs: list[tuple[int, int, int]] = []
        k = 0
        while k < len(events):
            point = events[k][0]
            while k < len(events) and events[k][0] == point:
                _, d, t = events[k]
                active[t] = active.get(t, 0) + d
                if not active[t]:
                    del active[t]
                k += 1
            if active and k < len(events):
                nxt = events[k][0]
                key = frozenset(active)
                tgt = closures.get(key)
                if tgt is None:
                    tgt = closures[key] = nfa.closure(key)
                j = index.get(tgt)
                if j is None:
                    if len(sets) >= MAX_DFA_STATES:
                        raise TooLarge(f"the regular expression needs more than {MAX_DFA_STATES} DFA states")
                    j = index[tgt] = len(sets)
                    sets.append(tgt)
                segs.append((point, nxt - 1, j))
        trans.append(_merge(segs))
        i += 1
    return DFA(trans, accept)


class _Interner:
    """Numbers the states of an automaton built breadth first (keys -> ids, with a cap)."""

    def __init__(self, first: object, what: str) -> None:
        self.index = {first: 0}
        self.keys = [first]
        self.what = what

    def id(self, key: object) -> int:
        j = self.index.get(key)
        if j is None:
            if len(self.keys) >= MAX_DFA_STATES:
                raise TooLarge(f"{self.what} needs more than {MAX_DFA_STATES} DFA states")
            j = self.index[key] = len(self.keys)
            self.keys.append(key)
        return j


def _pair_rows(a: Trans, b: Trans) -> list[tuple[int, int, int, int]]:
    """Sweep two rows: ``(lo, hi, target_a or -1, target_b or -1)`` over the union of their intervals."""
    points = sorted({lo for lo, _, _ in a} | {hi + 1 for _, hi, _ in a} | {lo for lo, _, _ in b} | {hi + 1 for _, hi, _ in b})
    out = []
    ia = ib = 0
    for lo, nxt in zip(points, points[1:], strict=False):
        while ia < len(a) and a[ia][1] < lo:
            ia += 1
        while ib < len(b) and b[ib][1] < lo:
            ib += 1
        ta = a[ia][2] if ia < len(a) and a[ia][0] <= lo else -1
        tb = b[ib][2] if ib < len(b) and b[ib][0] <= lo else -1
        if ta >= 0 or tb >= 0:
            out.append((lo, nxt - 1, ta, tb))
    return out


def product(a: DFA, b: DFA, keep: Callable[[bool, bool], bool]) -> DFA:
    """The DFA of words ``w`` with ``keep(a accepts w, b accepts w)`` (``keep(False, False)`` must be False)."""
    both_needed = not keep(True, False) and not keep(False, True)
    states = _Interner((0, 0), "a combination of patterns")
    trans: list[Trans] = []
    accept: list[bool] = []
    i = 0
    while i < len(states.keys):
        p, q = states.keys[i]  # type: ignore[misc]
        accept.append(keep(p >= 0 and a.accept[p], q >= 0 and b.accept[q]))
        segs = []
        for lo, hi, ta, tb in _pair_rows(a.trans[p] if p >= 0 else [], b.trans[q] if q >= 0 else []):
            if not (both_needed and (ta < 0 or tb < 0)):
                segs.append((lo, hi, states.id((ta, tb))))
        trans.append(_merge(segs))
        i += 1
    return trim(DFA(trans, accept))


def intersect(a: DFA, b: DFA) -> DFA:
    return product(a, b, lambda x, y: x and y)


def union(a: DFA, b: DFA) -> DFA:
    return product(a, b, lambda x, y: x or y)


def difference(a: DFA, b: DFA) -> DFA:
    return product(a, b, lambda x, y: x and not y)


def complement(a: DFA, universe: CharSet = UNIVERSE) -> DFA:
    """Words over ``universe`` that ``a`` rejects."""
    top = DFA([[(lo, hi, 0) for lo, hi in universe]], [True])
    return difference(top, a)


def trim(d: DFA) -> DFA:
    """Keep the states reachable from the start that can reach an accepting state (start always kept)."""
    n = d.num_states
    reach = [False] * n
    reach[0] = True
    todo = [0]
    while todo:
        s = todo.pop()
        for _, _, t in d.trans[s]:
            if not reach[t]:
                reach[t] = True
                todo.append(t)
    preds: list[list[int]] = [[] for _ in range(n)]
    for s in range(n):
        if reach[s]:
            for _, _, t in d.trans[s]:
                preds[t].append(s)
    live = [reach[s] and d.accept[s] for s in range(n)]
    todo = [s for s in range(n) if live[s]]
    while todo:
        t = todo.pop()
        for s in preds[t]:
            if not live[s]:
                live[s] = True
                todo.append(s)
    keep = [s for s in range(n) if live[s] or s == 0]
    new = {s: k for k, s in enumerate(keep)}
    trans = [_merge([(lo, hi, new[t]) for lo, hi, t in d.trans[s] if t in new and live[t]]) for s in keep]
    return DFA(trans, [d.accept[s] for s in keep])


def is_empty(d: DFA) -> bool:
    t = trim(d)
    return not any(t.accept)


def minimize(d: DFA) -> DFA:
    """Moore's algorithm on the trimmed DFA (missing transitions all go to one dead state)."""
    d = trim(d)
    n = d.num_states
    block = [1 if a else 0 for a in d.accept]
    count = len(set(block))
    while True:
        sigs: dict[tuple, int] = {}
        new = []
        for s in range(n):
            row = _merge([(lo, hi, block[t]) for lo, hi, t in d.trans[s]])
            key = (block[s], tuple(row))
            new.append(sigs.setdefault(key, len(sigs)))
        if len(sigs) == count:
            break
        block, count = new, len(sigs)
    order = {}
    for s in [0] + list(range(n)):
        order.setdefault(block[s], len(order))
    trans: list[Trans] = [[] for _ in order]
    accept = [False] * len(order)
    for s in range(n):
        b = order[block[s]]
        accept[b] = d.accept[s]
        trans[b] = _merge([(lo, hi, order[block[t]]) for lo, hi, t in d.trans[s]])
    return DFA(trans, accept)


def shortest_length(d: DFA) -> int | None:
    """Length of a shortest accepted word, ``None`` if none."""
    dist = {0: 0}
    todo = deque([0])
    while todo:
        s = todo.popleft()
        if d.accept[s]:
            return dist[s]
        for _, _, t in d.trans[s]:
            if t not in dist:
                dist[t] = dist[s] + 1
                todo.append(t)
    return None


def restrict_length(d: DFA, lo: int, hi: int | None) -> DFA:
    """Words of ``d`` whose length is in ``[lo, hi]`` (product with a counter)."""
    top = hi if hi is not None else lo
    states = _Interner((0, 0), "a length-bounded pattern")
    trans: list[Trans] = []
    accept: list[bool] = []
    i = 0
    while i < len(states.keys):
        s, n = states.keys[i]  # type: ignore[misc]
        accept.append(d.accept[s] and n >= lo and (hi is None or n <= hi))
        segs = []
        if hi is None or n < hi:
            n2 = min(n + 1, top) if hi is None else n + 1
            segs = [(a, b, states.id((t, n2))) for a, b, t in d.trans[s]]
        trans.append(segs)
        i += 1
    return trim(DFA(trans, accept))


def to_tree(d: DFA, max_size: int = MAX_TREE_SIZE, max_depth: int = MAX_TREE_DEPTH) -> Node:
    """A regular-expression tree for the language of ``d`` (state elimination, smallest degree first).

    Raises:
        TooLarge: the tree would exceed ``max_size`` nodes or ``max_depth`` nesting levels.
    """
    if d.num_states > MAX_ELIMINATION_STATES:
        raise TooLarge(f"{d.num_states} automaton states are too many to turn into a regular expression")
    d = minimize(d)
    n = d.num_states
    start, final = n, n + 1
    edges: dict[int, dict[int, Node]] = {s: {} for s in range(n + 2)}
    preds: dict[int, set[int]] = {s: set() for s in range(n + 2)}
    measure: dict[int, tuple[int, int]] = {}  # id(node) -> (size, depth), upper bounds
    keep: list[Node] = []

    def m(node: Node) -> tuple[int, int]:
        return measure.get(id(node), (1, 1))

    def note(node: Node, sz: int, dp: int) -> Node:
        if sz > max_size or dp > max_depth:
            raise TooLarge(f"the regular expression would have more than {max_size} nodes or {max_depth} levels")
        measure[id(node)] = (sz, dp)
        keep.append(node)
        return node

    def add(p: int, q: int, r: Node) -> None:
        if r == NOTHING:
            return
        old = edges[p].get(q)
        if old is None:
            edges[p][q] = r
        else:
            (s1, d1), (s2, d2) = m(old), m(r)
            edges[p][q] = note(alt(old, r), s1 + s2 + 1, max(d1, d2) + 1)
        preds[q].add(p)

    for s in range(n):
        by_target: dict[int, list[tuple[int, int]]] = {}
        for lo, hi, t in d.trans[s]:
            by_target.setdefault(t, []).append((lo, hi))
        for t, iv in by_target.items():
            add(s, t, Chars(charset(iv)))
        if d.accept[s]:
            add(s, final, EPS)
    add(start, 0, EPS)
    remaining = set(range(n))
    while remaining:
        k = min(remaining, key=lambda s: (len(preds[s] - {s}) * len(set(edges[s]) - {s}), s))
        remaining.discard(k)
        loop = edges[k].pop(k, None)
        preds[k].discard(k)
        star = EPS
        if loop is not None:
            ls, ld = m(loop)
            star = note(rep(loop, 0, None), ls + 1, ld + 1)
        outs = list(edges[k].items())
        for p in list(preds[k]):
            into = edges[p].pop(k)
            for q, out in outs:
                (s1, d1), (s2, d2), (s3, d3) = m(into), m(star), m(out)
                add(p, q, note(cat(into, star, out), s1 + s2 + s3 + 1, max(d1, d2, d3) + 1))
        for q, _ in outs:
            preds[q].discard(k)
        edges[k] = {}
        preds[k] = set()
    return edges[start].get(final, NOTHING)
