"""Shortest completions: the fewest bytes that turn a viable prefix into a sentence of the grammar.

Used to finish a constrained sample inside its token budget (:mod:`decoding.grammar.budget`).

How a completion is found for a state ``(parser stack, lexer DFA state)``:

1. The open lexeme is closed: a breadth-first search in the lexer context's DFA gives, for every
   terminal the parser accepts, the shortest bytes after which the lexer would emit it.
2. The parser stack is completed with LR(0) items. Every LALR state is an LR(0) item set; an item
   ``A -> alpha . beta`` of the state on top of a stack is valid for it, so reading a shortest
   yield of ``beta`` and reducing ``A`` pops ``|alpha|`` states and takes the goto on ``A`` from the
   state below (Knuth's viable-prefix theory). A Dijkstra search over ``(stack height, top state)``
   with these moves finds the cheapest way to reach ``$root -> start . $END``. Shortest yields of
   the nonterminals come from Knuth's generalisation of Dijkstra to grammars (1977).
3. The terminals' shortest strings are joined. Where a terminal's shortest string would continue
   the lexeme before it (the longest-match lexer would merge the two), the shorter of two repairs
   is taken: the terminal's shortest string whose first byte ends that lexeme (``/[bc]+/`` after
   ``/[ab]+/`` becomes ``c``, not ``b``), or the shortest ``%ignore`` string in between. The result
   is replayed through the compiled grammar: only completions that the exact matcher accepts are
   returned.

Lengths are in bytes, a bound on tokens for vocabularies with a token for every single byte
(byte-level BPE, SentencePiece byte fallback).
"""

from __future__ import annotations

import functools
import heapq
from collections import deque
from typing import TYPE_CHECKING, Any

from decoding.grammar.dfa import DEAD, START, build_dfa

if TYPE_CHECKING:
    from decoding.grammar.compiled import CompiledGrammar, State

AUGMENTED = -1  # rule index of $root -> start $END
# Byte preference when several shortest strings exist: printable ASCII first (space, digits, letters, ...).
BYTE_ORDER = list(range(0x20, 0x7F)) + list(range(0x20)) + list(range(0x7F, 0x100))
MEMO_LIMIT = 1 << 16


class Completer:
    """Shortest completions for one :class:`~decoding.grammar.compiled.CompiledGrammar`.

    Args:
        grammar: the compiled grammar (its rules, parse table, lexer DFAs and driver).
    """

    def __init__(self, grammar: CompiledGrammar) -> None:
        self.g = grammar
        spec = grammar.spec
        origins = {o for o, _ in spec.rules}
        self.rules = [(o, [(s, s not in origins) for s in e]) for o, e in spec.rules]
        self.start = spec.start
        self._term_dfas: dict[int, Any] = {}
        self.term_string = [self._shortest_terminal(i) for i in range(len(grammar.terminals))]
        self.ignore_string = min(
            (self.term_string[i] for i in range(len(grammar.terminals)) if grammar.ignore_mask >> i & 1 and self.term_string[i]),
            key=len,
            default=None,
        )
        self._rhs: dict[int, list[tuple[str, bool]]] = {r: rhs for r, (_, rhs) in enumerate(self.rules)}
        self._rhs[AUGMENTED] = [(self.start, False)]
        self.yield_cost, self.best_rule = self._shortest_yields()
        self.kernels = self._kernels()
        self._parse_memo: dict[int, tuple[int, list[str]] | None] = {}
        self._close_memo: dict[tuple[int, int, int], list[tuple[int, bytes]]] = {}
        self._memo: dict[State, bytes | None] = {}

    # --- terminals ------------------------------------------------------------------------------
    def _terminal_dfa(self, i: int) -> Any:
        """Terminal ``i``'s own DFA (built once)."""
        d = self._term_dfas.get(i)
        if d is None:
            g = self.g
            d = self._term_dfas[i] = build_dfa(g._nfa, [g._starts[i]], {g._ends[i]: 1 << i})
        return d

    def _shortest_terminal(self, i: int) -> bytes | None:
        """The shortest byte string terminal ``i`` matches on its own (``None`` if it matches nothing)."""
        d = self._terminal_dfa(i)
        return _first_goal(d.rows, d.accepts, d.reach)

    def _shortest_terminal_not_starting(self, i: int, banned: Any) -> bytes | None:
        """The shortest string of terminal ``i`` whose first byte ``b`` has ``banned(b)`` false, or ``None``."""
        d = self._terminal_dfa(i)
        seen: dict[int, bytes] = {}
        todo: deque[int] = deque()
        for b in BYTE_ORDER:
            q = d.rows[START][b]
            if q != DEAD and d.reach[q] and q not in seen and not banned(b):
                seen[q] = bytes([b])
                todo.append(q)
        while todo:  # breadth first: the first accepting state is reached by a shortest string
            q = todo.popleft()
            if d.accepts[q]:
                return seen[q]
            for b in BYTE_ORDER:
                q2 = d.rows[q][b]
                if q2 != DEAD and d.reach[q2] and q2 not in seen:
                    seen[q2] = seen[q] + bytes([b])
                    todo.append(q2)
        return None

    def _term_cost(self, name: str) -> int | None:
        i = self.g.term_index.get(name)
        if i is None:
            return None
        s = self.term_string[i]
        return None if s is None else len(s)

    # --- nonterminals: Knuth (1977) -------------------------------------------------------------
    def _shortest_yields(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per nonterminal: the byte length of its shortest yield, and the rule that gives it."""
        cost: dict[str, int] = {}
        best: dict[str, int] = {}
        uses: dict[str, list[int]] = {}
        for r, (_, rhs) in enumerate(self.rules):
            for name, is_term in rhs:
                if not is_term:
                    uses.setdefault(name, []).append(r)
        heap: list[tuple[int, int, str]] = []

        def offer(r: int) -> None:
            origin, rhs = self.rules[r]
            if origin in cost:
                return
            total = self._seq_cost(rhs, cost)
            if total is not None:
                heapq.heappush(heap, (total, r, origin))

        for r in range(len(self.rules)):
            offer(r)
        while heap:
            c, r, origin = heapq.heappop(heap)
            if origin in cost:
                continue
            cost[origin], best[origin] = c, r  # final: every rule using it may now be complete
            for r2 in uses.get(origin, ()):
                offer(r2)
        return cost, best

    def _expand(self, symbols: list[tuple[str, bool]], out: list[str]) -> None:
        """Append the terminals of a shortest yield of ``symbols`` to ``out``."""
        stack = list(reversed(symbols))
        while stack:
            name, is_term = stack.pop()
            if is_term:
                out.append(name)
            else:
                stack.extend(reversed(self.rules[self.best_rule[name]][1]))

    def _seq_cost(self, symbols: list[tuple[str, bool]], yields: dict[str, int] | None = None) -> int | None:
        """Bytes of a shortest yield of ``symbols`` (nonterminals from ``yields``, default the final table)."""
        yields = self.yield_cost if yields is None else yields
        total = 0
        for name, is_term in symbols:
            c = self._term_cost(name) if is_term else yields.get(name)
            if c is None:
                return None
            total += c
        return total

    # --- LR(0) items of the LALR states -----------------------------------------------------------
    def _kernels(self) -> dict[Any, list[tuple[int, int]]]:
        """Kernel items ``(rule, dot)`` of every LALR state, by building the LR(0) automaton alongside."""
        by_origin: dict[str, list[int]] = {}
        for r, (origin, _) in enumerate(self.rules):
            by_origin.setdefault(origin, []).append(r)
        rhs_of = self._rhs

        def closure(kernel: frozenset[tuple[int, int]]) -> set[tuple[int, int]]:
            items = set(kernel)
            todo = list(kernel)
            while todo:
                r, d = todo.pop()
                rhs = rhs_of[r]
                if d < len(rhs) and not rhs[d][1]:
                    for r2 in by_origin.get(rhs[d][0], ()):
                        if (r2, 0) not in items:
                            items.add((r2, 0))
                            todo.append((r2, 0))
            return items

        parser = self.g.parser
        first = frozenset({(AUGMENTED, 0)})
        kernels = {parser.start_state: sorted(first)}
        todo = deque([(parser.start_state, first)])
        while todo:
            state, kernel = todo.popleft()
            items = closure(kernel)
            for sym, act in parser.actions[state].items():
                if act[0] != "s" or sym == "$END":
                    continue
                nxt = frozenset((r, d + 1) for r, d in items if d < len(rhs_of[r]) and rhs_of[r][d][0] == sym)
                if act[1] not in kernels:
                    kernels[act[1]] = sorted(nxt)
                    todo.append((act[1], nxt))
        return kernels

    # --- completions ----------------------------------------------------------------------------
    def parse_completion(self, sid: int) -> tuple[int, list[str]] | None:
        """``(bytes, terminal names)`` of a shortest completion of parser stack ``sid``, or ``None``."""
        if sid in self._parse_memo:
            return self._parse_memo[sid]
        parser = self.g.parser
        stack = parser.states(sid)
        k = len(stack) - 1
        start = (k, stack[k])
        dist = {start: 0}
        back: dict[tuple[int, Any], tuple[tuple[int, Any], int, int]] = {}
        heap = [(0, 0, start)]
        tie = 0
        found = None
        while heap:
            c, _, node = heapq.heappop(heap)
            if c > dist.get(node, c):
                continue
            j, p = node
            for r, d in self.kernels.get(p, ()):
                rest = self._rhs[r][d:]
                extra = self._seq_cost(rest)
                if extra is None:
                    continue
                if r == AUGMENTED:
                    if found is None or c + extra < found[0]:
                        found = (c + extra, node, r, d)
                    continue
                if j - d < 0:
                    continue
                below = stack[j - d]
                act = parser.actions[below].get(self.rules[r][0])
                if act is None or act[0] != "s":
                    continue
                nxt = (j - d + 1, act[1])
                nc = c + extra
                if nc < dist.get(nxt, nc + 1):
                    dist[nxt] = nc
                    back[nxt] = (node, r, d)
                    tie += 1
                    heapq.heappush(heap, (nc, tie, nxt))
            if found is not None and found[0] <= c:
                break
        out = None
        if found is not None:
            total, node, r, d = found
            moves = [(r, d)]
            while node != start:
                node, r2, d2 = back[node]
                moves.append((r2, d2))
            terms: list[str] = []
            for r2, d2 in reversed(moves):
                self._expand(self._rhs[r2][d2:], terms)
            out = (total, terms)
        if len(self._parse_memo) > MEMO_LIMIT:
            self._parse_memo.clear()
        self._parse_memo[sid] = out
        return out

    def _closings(self, sid: int, q: int) -> list[tuple[int, bytes]]:
        """Ways to end the open lexeme in DFA state ``q``: ``(terminal index, bytes)``, shortest per terminal."""
        g = self.g
        ctx = g.ctx_of(sid)
        ok = g.ok_bits(sid)
        key = (ctx, ok, q)
        out = self._close_memo.get(key)
        if out is None:
            live, choice = g.ok_tables(ctx, ok)
            rows = g.dfa(ctx).rows
            paths = _bfs(rows, q, lambda s: choice[s] >= 0, lambda s: bool(live[s]))
            seen: dict[int, bytes] = {}
            for s, path in paths.items():
                t = choice[s]
                if t not in seen or len(path) < len(seen[t]):
                    seen[t] = path
            out = self._close_memo[key] = sorted(((t, p) for t, p in seen.items()), key=lambda tp: len(tp[1]))
        return out

    def complete(self, state: State) -> bytes | None:
        """A shortest (in bytes) continuation that makes the text after ``state`` a sentence.

        ``b""`` when the text is already complete; ``None`` when none was found (the grammar's
        terminals cannot be joined without a separator it lacks, or the state is not viable).
        """
        if state in self._memo:
            return self._memo[state]
        g = self.g
        out: bytes | None = None
        if g.is_complete(state):
            out = b""
        else:
            sid, q = state
            candidates: list[tuple[int, bytes, list[str]]] = []
            if q == START:
                pc = self.parse_completion(sid)
                if pc is not None:
                    candidates.append((pc[0], b"", pc[1]))
            else:
                for t, path in self._closings(sid, q):
                    sid2 = sid if g.ignore_mask >> t & 1 else g.parser.feed(sid, g.term_names[t])
                    pc = self.parse_completion(sid2) if sid2 >= 0 else None
                    if pc is not None:
                        candidates.append((len(path) + pc[0], path, pc[1]))
            for _, head, terms in sorted(candidates, key=lambda c: c[0]):
                out = self._assemble(state, head, terms)
                if out is not None:
                    break
        if len(self._memo) > MEMO_LIMIT:
            self._memo.clear()
        self._memo[state] = out
        return out

    def _assemble(self, state: State, head: bytes, terms: list[str]) -> bytes | None:
        """Join ``head`` and the terminals' strings, separating lexemes that would merge; check it."""
        g = self.g
        pieces = [head] if head else []
        cur = g.step_bytes(state, head) if head else state
        if cur is None:
            return None
        for name in terms:
            i = g.term_index[name]
            x = self.term_string[i]
            if x is None:
                return None
            if self._would_extend(cur, x[0]):  # the shortest string would merge into the open lexeme
                repairs = [self._shortest_terminal_not_starting(i, functools.partial(self._would_extend, cur)),
                           None if self.ignore_string is None else self.ignore_string + x]
                steps = [(r, g.step_bytes(cur, r)) for r in sorted((r for r in repairs if r), key=len)]
                x, nxt = next(((r, c) for r, c in steps if c is not None), (None, None))
                if x is None:
                    return None
                cur = nxt
            else:
                cur = g.step_bytes(cur, x)
            if cur is None:
                return None
            pieces.append(x)
        if not g.is_complete(cur):
            return None
        return b"".join(pieces)

    def _would_extend(self, state: State, byte: int) -> bool:
        """Whether ``byte`` would continue the open lexeme of ``state`` instead of starting a new one."""
        sid, q = state
        if q == START:
            return False
        g = self.g
        ctx = g.ctx_of(sid)
        d = g.dfa(ctx)
        a = d.accepts[q]
        if a and not a & ~g.ignore_mask:
            return False  # an ignored lexeme: its DFA state already continues into the next lexeme
        q2 = d.rows[q][byte]
        return q2 != DEAD and bool(g.ok_tables(ctx, g.ok_bits(sid))[0][q2])


def _bfs(rows: list[list[int]], q0: int, goal: Any, live: Any) -> dict[int, bytes]:
    """Shortest byte paths from ``q0`` to every ``goal`` state through ``live`` states (first found wins ties)."""
    paths: dict[int, bytes] = {}
    seen = {q0: b""}
    todo = deque([q0])
    while todo:
        s = todo.popleft()
        p = seen[s]
        if goal(s):
            paths[s] = p
        row = rows[s]
        for b in BYTE_ORDER:
            s2 = row[b]
            if s2 != DEAD and s2 not in seen and live(s2):
                seen[s2] = p + bytes([b])
                todo.append(s2)
    return paths


def _first_goal(rows: list[list[int]], accepts: list[int], reach: list[int]) -> bytes | None:
    """The shortest string from the start state of a single-terminal DFA to an accepting state."""
    paths = _bfs(rows, START, lambda s: bool(accepts[s]), lambda s: bool(reach[s]))
    return min(paths.values(), key=len) if paths else None
