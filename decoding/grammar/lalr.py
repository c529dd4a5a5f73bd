"""An LALR(1) driver over lark's parse table with interned, immutable stacks.

A parser stack is a persistent linked list of LALR states; every distinct stack gets one
integer id (hash-consing), so a parser configuration is a plain ``int``: free to copy, fork,
roll back and use as a cache key. Feeding a terminal is memoised per ``(stack, terminal)``.

Every query lowers :attr:`LalrDriver.low` to the smallest stack depth it read, so a caller can
tell that a result depends only on the top ``depth - low + 1`` states of a stack (results for
other stacks with the same top states are then the same).
"""

from __future__ import annotations

from typing import Any

from decoding.grammar.spec import END, ParseTable


class LalrDriver:
    """Runs an LALR(1) table on interned stacks.

    Args:
        table: a :class:`~decoding.grammar.spec.ParseTable` (rows of ``("s", target)`` and
            ``("r", pop count, origin, rule)`` actions by symbol name).
    """

    def __init__(self, table: ParseTable) -> None:
        self.end_state = table.end_state
        self.start_state = table.start_state
        # per LALR state: symbol -> ("s", target) | ("r", pop_count, origin_name, rule index)
        self.actions: list[dict[str, tuple]] = table.actions
        terminals = {k for k in set().union(*self.actions) if k.isupper() and k != END}  # each symbol tested once
        self.terminals_at: dict[Any, tuple[str, ...]] = {
            s: tuple(sorted(row.keys() & terminals)) for s, row in enumerate(self.actions)
        }
        self._nodes: list[tuple[Any, int, int]] = []  # id -> (lalr state, parent id, depth)
        self._intern: dict[tuple[Any, int], int] = {}
        self._feed: dict[tuple[int, str], tuple[int, int]] = {}
        self._accepts: dict[int, tuple[frozenset[str], int]] = {}
        self._end: dict[int, tuple[bool, int]] = {}
        self.low = 1 << 30  # smallest stack depth read since the caller last reset it
        self.root = self._push(-1, self.start_state)

    def _push(self, parent: int, state: Any) -> int:
        key = (state, parent)
        sid = self._intern.get(key)
        if sid is None:
            sid = len(self._nodes)
            depth = 1 if parent < 0 else self._nodes[parent][2] + 1
            self._nodes.append((state, parent, depth))
            self._intern[key] = sid
        return sid

    def top(self, sid: int) -> Any:
        """The LALR state on top of stack ``sid``."""
        return self._nodes[sid][0]

    def depth(self, sid: int) -> int:
        return self._nodes[sid][2]

    def states(self, sid: int) -> list[Any]:
        """The stack as a list of LALR states, bottom first."""
        out = []
        while sid >= 0:
            state, sid, _ = self._nodes[sid]
            out.append(state)
        return out[::-1]

    def top_states(self, sid: int, k: int) -> tuple:
        """The top ``k`` LALR states of stack ``sid`` (top first)."""
        out = []
        nodes = self._nodes
        while k > 0 and sid >= 0:
            state, sid, _ = nodes[sid]
            out.append(state)
            k -= 1
        return tuple(out)

    def _run(self, sid: int, term: str) -> tuple[int, int]:
        """Feed ``term``: (new stack id or -1 on a syntax error or -2 when ``$END`` is accepted, lowest depth read)."""
        nodes, actions = self._nodes, self.actions
        low = nodes[sid][2]
        while True:
            act = actions[nodes[sid][0]].get(term)
            if act is None:
                return -1, low
            if act[0] == "s":
                if term == END:
                    return -1, low
                return self._push(sid, act[1]), low
            for _ in range(act[1]):
                sid = nodes[sid][1]
            depth = nodes[sid][2]
            if depth < low:
                low = depth
            goto = actions[nodes[sid][0]].get(act[2])
            if goto is None or goto[0] != "s":
                return -1, low
            sid = self._push(sid, goto[1])
            if term == END and nodes[sid][0] == self.end_state:
                return -2, low

    def feed(self, sid: int, term: str) -> int:
        """Stack after shifting terminal ``term`` (with the reductions before it), or ``-1``."""
        key = (sid, term)
        out = self._feed.get(key)
        if out is None:
            out = self._feed[key] = self._run(sid, term)
        if out[1] < self.low:
            self.low = out[1]
        return out[0]

    def accepts_end(self, sid: int) -> bool:
        """Whether the input can end here (``$END`` is accepted)."""
        out = self._end.get(sid)
        if out is None:
            res, low = self._run(sid, END)
            out = self._end[sid] = (res == -2, low)
        if out[1] < self.low:
            self.low = out[1]
        return out[0]

    def accepts(self, sid: int) -> frozenset[str]:
        """Exactly the terminals that can be shifted next (LALR lookaheads that survive reductions)."""
        out = self._accepts.get(sid)
        if out is None:
            low = self.depth(sid)
            acc = []
            for t in self.terminals_at[self.top(sid)]:
                res, lo = self._feed.get((sid, t)) or self._run(sid, t)
                self._feed[(sid, t)] = (res, lo)
                low = min(low, lo)
                if res >= 0:
                    acc.append(t)
            out = self._accepts[sid] = (frozenset(acc), low)
        if out[1] < self.low:
            self.low = out[1]
        return out[0]

    def reduce_rules(self, sid: int) -> list[str]:
        """Names of the rules the top state can reduce (for error messages)."""
        return sorted({a[2] for a in self.actions[self.top(sid)].values() if a[0] == "r"})
