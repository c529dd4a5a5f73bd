"""The mask computation of a compiled grammar: a tree of vectorised vocabulary runs.

For a state ``(parser stack, lexer DFA state)`` the allowed tokens are found by running the lexer
DFA over the whole vocabulary at once (:class:`~decoding.grammar.tokens.TokenMatrix`). Tokens whose
open lexeme is still live are allowed; tokens whose lexeme ends inside them are grouped by the DFA
state it ended in, the parser is fed that terminal once per group, and the rest of those tokens
continue through the next lexer context. The runs do not depend on the parser stack and are
cached as a tree (:class:`_Node`); only the walk does. Masks are cached by exact state and by the
top parser states the walk read (:attr:`LalrDriver.low`), so states that differ only deep in the
stack share one mask. Design after llguidance (lexer DFA over a token trie, parser at lexeme
ends) and XGrammar (arXiv:2411.15100, per-lexer-state precomputation).
"""

from __future__ import annotations

import numpy as np
import torch

from decoding.grammar.dfa import DEAD, START
from decoding.grammar.tokens import RunResult

State = tuple[int, int]  # (parser stack id, lexer DFA state)


class _Node:
    """Tokens run through one lexer DFA from one state (cached; independent of the parser stack).

    The root node of ``(context, state)`` holds every token from offset 0; a child holds the
    tokens whose lexeme ended inside them in DFA state ``s``, run on from the byte that ended it
    through the next context's DFA. Which children are visited, and which ``end`` states are
    live, is what depends on the parser stack.
    """

    __slots__ = ("ids", "end", "groups", "children", "allowed", "members", "memo", "memo_ks")

    def __init__(self, ids: np.ndarray | None, end: np.ndarray, groups: list) -> None:
        self.ids = ids  # token ids (None: the whole vocabulary, by id)
        self.end = end  # state after the token, 0 where the lexeme ended inside it
        self.groups = groups  # [(state the lexeme ended in, common restart offset or -1, ids, offsets)]
        self.children: dict[tuple[int, int, int], _Node] = {}
        self.allowed: dict[tuple[int, int], tuple[bool, np.ndarray]] = {}  # (ctx, ok) -> ids / (V,) bool
        self.members: dict[int, np.ndarray] = {}  # group index -> (V,) bool membership
        self.memo: dict[tuple, np.ndarray] = {}  # top parser states read -> allowed ids (subset nodes)
        self.memo_ks: list[int] = []  # the numbers of top states those keys hold


class MaskComputation:
    """Mixin of :class:`~decoding.grammar.compiled.CompiledGrammar`: mask computation and caches.

    Relies on the grammar's ``tokens``, ``parser``, ``dfa``, ``ctx_of``, ``ok_bits``, ``ok_tables``,
    ``ignore_mask``, ``term_names``, ``is_complete`` and the cache attributes set in its ``__init__``.
    """

    def _root(self, ctx: int, q: int, offset: int = 0) -> _Node:
        """Every token run from DFA state ``q`` of context ``ctx``, starting at byte ``offset``."""
        key = (ctx, q, offset)
        node = self._roots.get(key)
        if node is None:
            delta = self.dfa(ctx).delta

            def compute() -> tuple[np.ndarray, list]:
                res = self.tokens.run_all(delta, q, offset)
                return res.end, _group(res, None)

            end, groups = self.context(ctx).run(self.tokens, q, offset, compute)  # shared across grammars
            node = self._roots[key] = _Node(None, end, groups)
        return node

    def _child(self, node: _Node, s: int, k: int, ids: np.ndarray, pos: np.ndarray, ctx: int) -> _Node:
        """The tokens of one group of ``node`` run on through context ``ctx`` from their offsets."""
        key = (s, k, ctx)
        child = node.children.get(key)
        if child is None:
            res = self.tokens.run(self.dfa(ctx).delta, START, ids, pos)
            child = node.children[key] = _Node(ids, res.end, _group(res, ids))
        return child

    def _member(self, node: _Node, g: int) -> np.ndarray:
        """``(V,)`` bool membership of group ``g`` of a root node (cached)."""
        m = node.members.get(g)
        if m is None:
            m = np.zeros(self.vocab_size, dtype=bool)
            m[node.groups[g][2]] = True
            node.members[g] = m
        return m

    def _allowed(self, node: _Node, ctx: int, ok: int, live: np.ndarray) -> tuple[bool, np.ndarray]:
        """Tokens of ``node`` whose lexeme is still open and live: ``(is_bool_mask, array)``."""
        key = (ctx, ok)
        out = node.allowed.get(key)
        if out is None:
            hit = live[node.end]
            if node.ids is None:
                out = (True, hit)
            else:
                idx = node.ids[hit]
                if idx.size > self.vocab_size // 16:
                    full = np.zeros(self.vocab_size, dtype=bool)
                    full[idx] = True
                    out = (True, full)
                else:
                    out = (False, idx)
            node.allowed[key] = out
        return out

    def _collect(self, node: _Node, sid: int, out: np.ndarray, filt: np.ndarray | None = None) -> None:
        """Set ``out[id] = True`` for every token of ``node`` (within ``filt``) that keeps the text viable.

        Groups of a whole-vocabulary node that restart at a common offset ``k`` continue in the
        next context's whole-vocabulary run from offset ``k``, restricted by a membership filter;
        other groups continue in a cached run over just their tokens. Results of those subset
        runs are memoised by the top parser states they read (like the mask cache), so long
        tokens made of many lexemes (``"----"``, ``"))))"``) are walked once, not once per mask.
        """
        if node.ids is not None:
            self._collect_subset(node, sid, out, filt)
            return
        self._collect_node(node, sid, out, filt)

    def _collect_subset(self, node: _Node, sid: int, out: np.ndarray, filt: np.ndarray | None) -> None:
        parser = self.parser
        depth = parser.depth(sid)
        res = None
        for k in node.memo_ks:
            res = node.memo.get(parser.top_states(sid, k))
            if res is not None:
                parser.low = min(parser.low, depth - k + 1)
                break
        if res is None:
            outer = parser.low
            parser.low = depth
            sub = np.zeros(self.vocab_size, dtype=bool)
            self._collect_node(node, sid, sub, None)
            res = node.ids[sub[node.ids]]
            k = depth - parser.low + 1
            parser.low = min(outer, parser.low)
            if len(node.memo) < MEMO_PER_NODE:
                node.memo[parser.top_states(sid, k)] = res
                if k not in node.memo_ks:
                    node.memo_ks.append(k)
                    node.memo_ks.sort()
        if res.size:
            out[res if filt is None else res[filt[res]]] = True

    def _collect_node(self, node: _Node, sid: int, out: np.ndarray, filt: np.ndarray | None) -> None:
        ctx = self.ctx_of(sid)
        ok = self.ok_bits(sid)
        live, choice = self.ok_tables(ctx, ok)
        is_bool, arr = self._allowed(node, ctx, ok, live)
        if is_bool:
            if filt is None:
                out |= arr
            else:
                out |= arr & filt
        elif arr.size:
            out[arr if filt is None else arr[filt[arr]]] = True
        for g, (s, k, ids, pos) in enumerate(node.groups):
            t = choice[s]
            if t < 0:
                continue
            sid2 = sid if self.ignore_mask >> t & 1 else self.parser.feed(sid, self.term_names[t])
            if sid2 < 0:
                continue
            ctx2 = self.ctx_of(sid2)
            if (
                node.ids is None
                and k >= 0
                and (k == 0 or ids.size > SLICE_MIN or (ctx2, START, k) in self._roots)
            ):
                member = self._member(node, g)
                self._collect(
                    self._root(ctx2, START, k), sid2, out, member if filt is None else member & filt
                )
            else:
                self._collect(self._child(node, s, k, ids, pos, ctx2), sid2, out, filt)

    def mask_entry(self, state: State) -> tuple[torch.Tensor, bool]:
        """``(mask (V,) bool, anything allowed)`` for ``state``, cached.

        Two cache levels: by exact state, and by ``(DFA state, top k parser states)`` where ``k``
        is how deep into the stack the computation had to read (the mask depends on nothing else).
        """
        entry = self._masks.get(state)
        if entry is not None:
            self._masks.move_to_end(state)
            self.stats["mask_hits"] += 1
            return entry
        sid, q = state
        parser = self.parser
        top = (q, parser.top(sid))
        for k in self._depths.get(top, ()):
            entry = self._shared.get((q, parser.top_states(sid, k)))
            if entry is not None:
                self.stats["mask_shared_hits"] += 1
                break
        else:
            self.stats["mask_misses"] += 1
            depth = parser.depth(sid)
            parser.low = depth
            full = np.zeros(self.vocab_size, dtype=bool)
            self._collect(self._root(self.ctx_of(sid), q), sid, full)
            if self.eos_token_id is not None:
                full[self.eos_token_id] = self.is_complete(state)
            entry = (torch.from_numpy(full), bool(full.any()))
            k = depth - parser.low + 1
            if len(self._shared) >= 4 * self.mask_cache_size:
                self._shared.clear()
                self._depths.clear()
            self._shared[(q, parser.top_states(sid, k))] = entry
            ks = self._depths.setdefault(top, [])
            if k not in ks:
                ks.append(k)
                ks.sort()
        self._masks[state] = entry
        if len(self._masks) > self.mask_cache_size:
            self._masks.popitem(last=False)
        return entry

    def mask(self, state: State) -> torch.Tensor:
        """``(V,)`` bool: tokens allowed after ``state`` (EOS exactly when the text is complete).

        The returned tensor is shared with the cache: do not modify it in place.
        """
        return self.mask_entry(state)[0]


SLICE_OFFSETS = 3  # tokens restarting at byte 0, 1 or 2 may reuse a whole-vocabulary run from that offset
SLICE_MIN = 2000  # ... when the group is at least this large (or that run already exists)
MEMO_PER_NODE = 256  # memoised results per subset node


def _group(res: RunResult, ids: np.ndarray | None) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Group the tokens whose lexeme ended inside them by (DFA state it ended in, restart offset).

    Offsets below :data:`SLICE_OFFSETS` get a group each; larger ones share a group with offset -1.
    """
    died = np.flatnonzero((res.end == DEAD) & (res.die_state != DEAD))
    if not died.size:
        return []
    states = res.die_state[died]
    if ids is not None:  # a subset: one group per state (its children are run, never sliced)
        out = []
        for s in np.unique(states).tolist():
            sel = died[states == s]
            out.append((int(s), -1, ids[sel], res.die_pos[sel]))
        return out
    where = np.minimum(res.die_pos[died], SLICE_OFFSETS)
    out = []
    for s in np.unique(states).tolist():
        in_s = states == s
        for k in np.unique(where[in_s]).tolist():
            sel = died[in_s & (where == k)]
            kk = -1 if k == SLICE_OFFSETS else int(k)
            out.append((int(s), kk, sel if ids is None else ids[sel], res.die_pos[sel]))
    return out
