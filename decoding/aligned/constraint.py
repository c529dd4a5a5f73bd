"""ASAp (Park et al., arXiv 2405.21047) as a decode-loop constraint: the grammar's mask plus a reweighting.

:class:`AlignedConstraint` wraps a grammar :class:`~decoding.core.protocols.Constraint` for one
``decode`` call. The loop calls, at every step,

1. :meth:`AlignedConstraint.reweight` on the processed logits: records the model's probabilities
   at each row's prefix ``u`` in the trie and adds ``log c(u v)`` to the logit of every visited
   child ``v`` (unvisited children have ``c = 1``: nothing to add);
2. :meth:`AlignedConstraint.mask`: the grammar's allowed set (the loop masks with it), so the row
   samples exactly ``Q(v | u) ∝ P(v | u) c(u v) 1[v allowed]``;
3. :meth:`AlignedConstraint.advance` with ``State.emitted``: every row walks down the trie by the
   token it emitted (``-1``: the row emitted nothing and is finished).

:meth:`AlignedConstraint.finish` then updates the trie with the sampled rows, in row order.
Nothing is read from ``State.x`` after the prompt, so any process that emits one token per row
per step (left-to-right decoding) drives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from decoding.aligned.asap import ASAp
from decoding.aligned.trie import Node
from decoding.core.protocols import Constraint
from decoding.core.types import State


@dataclass
class _Rows:
    """Per-row walk through the trie: current node, tokens taken, finished flag."""

    prompts: list[tuple[int, ...]]
    nodes: list[Node]
    tokens: list[list[int]]
    finished: list[bool]

    def copy(self) -> _Rows:
        return _Rows(list(self.prompts), list(self.nodes), [list(t) for t in self.tokens], list(self.finished))


class AlignedConstraint:
    """ASAp for one ``decode`` call over the batch of ``grammar`` (see the module docstring).

    Args:
        asap: the trie shared by every call (it outlives this object).
        grammar: a fresh grammar constraint for the batch; it is advanced with the batch.
    """

    def __init__(self, asap: ASAp, grammar: Constraint) -> None:
        self.asap = asap
        self.grammar = grammar
        self._rows: _Rows | None = None
        self._history: list[_Rows] = []  # rows before each advance, for rollback
        self._last: tuple[Tensor, dict[int, float]] | None = None  # (B, V) float64 logits, row -> logsumexp
        self._mask: tuple[State, Tensor] | None = None
        self._closed = False

    # ---- the Constraint protocol -------------------------------------------------------------
    def mask(self, state: State) -> Tensor:
        """The grammar's ``(B, V)`` allowed set, computed once per state."""
        if self._mask is None or self._mask[0] is not state:
            self._mask = (state, self.grammar.mask(state))
        return self._mask[1]

    def advance(self, tokens: Tensor) -> None:
        """Feed the tokens the last step emitted (``-1``: none) to the grammar and walk the trie."""
        self._check_open()
        if self._rows is None or self._last is None:
            raise ValueError("AlignedConstraint.advance before reweight: run it as decode()'s constraint")
        self.grammar.advance(tokens)
        self._mask = None
        rows = self._rows
        self._history.append(rows.copy())
        ld, lse = self._last
        self._last = None
        eos = self.asap.eos_token_ids
        for b, t in enumerate(tokens.tolist()):
            if rows.finished[b]:
                continue
            if t < 0:
                rows.finished[b] = True
                continue
            node = rows.nodes[b].children.get(t)
            if node is None:  # a new child: its raw probability P(t | prefix) from the step's logits
                if b not in lse:
                    lse[b] = float(torch.logsumexp(ld[b], dim=-1))
                node = rows.nodes[b].child(t, math.exp(float(ld[b, t]) - lse[b]), t in eos)
            rows.nodes[b] = node
            rows.tokens[b].append(t)
            rows.finished[b] = node.terminal

    def is_complete(self) -> Tensor:
        return self.grammar.is_complete()

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` advances (the trie keeps what it learned about the model)."""
        if n > len(self._history):
            raise ValueError(f"cannot roll back {n} steps: only {len(self._history)} were taken")
        self.grammar.rollback(n)
        for _ in range(n):
            self._rows = self._history.pop()
        self._mask = self._last = None

    def fork(self) -> AlignedConstraint:
        other = AlignedConstraint(self.asap, self.grammar.fork())
        other._rows = None if self._rows is None else self._rows.copy()
        other._history = [r.copy() for r in self._history]
        return other

    # ---- ASAp ---------------------------------------------------------------------------------
    def reweight(self, logits: Tensor, state: State) -> Tensor:
        """``(B, V)`` processed logits -> ``(B, V)`` logits + ``log c`` of visited children.

        Returns ``logits`` itself (never modified) when no row has a visited child with an estimate
        below 1, else a new float32 tensor.
        """
        self._check_open()
        if logits.dim() != 2:
            raise ValueError(f"ASAp needs next-token logits (B, V), got shape {tuple(logits.shape)}")
        if self._rows is None:
            self._rows = self._start(state)
        rows = self._rows
        if logits.shape[0] != len(rows.nodes):
            raise ValueError(f"logits have {logits.shape[0]} rows, the constraint started with {len(rows.nodes)}")
        allowed = self.mask(state).to(logits.device)
        ld = logits.to(torch.float64, copy=True)  # kept for the new children of the next advance
        live = [b for b, f in enumerate(rows.finished) if not f]
        need = [b for b in live if not rows.nodes[b].evaluated]
        lse: dict[int, float] = {}
        if need:
            idx = torch.tensor(need, device=logits.device)
            a, row = allowed[idx], ld[idx]
            full = torch.logsumexp(row, dim=-1)
            masses = ((row - full[:, None]).exp() * a).sum(-1).tolist()
            counts = torch.count_nonzero(a, dim=-1).tolist()
            for b, m, c, f in zip(need, masses, counts, full.tolist(), strict=True):
                rows.nodes[b].record(m, c)
                lse[b] = f
        self._last = (ld, lse)
        idx_rows, idx_toks, vals = [], [], []
        for b in live:
            adj = rows.nodes[b].adjustments()
            if adj is not None:
                idx_rows.append(torch.full_like(adj[0], b))
                idx_toks.append(adj[0])
                vals.append(adj[1])
        if not idx_rows:
            return logits
        out = logits.to(torch.float32, copy=True)
        dev = out.device
        out.index_put_((torch.cat(idx_rows).to(dev), torch.cat(idx_toks).to(dev)), torch.cat(vals).to(dev), accumulate=True)
        return out

    def finish(self) -> list[list[int]]:
        """Update the trie with every row (in row order); returns each row's generated ids (EOS kept)."""
        self._check_open()
        if self._rows is None:
            raise ValueError("the constraint was never used: pass it to decode() as its constraint first")
        self._closed = True
        self.asap.update(self._rows.prompts, self._rows.tokens)
        return [list(t) for t in self._rows.tokens]

    @property
    def prompts(self) -> list[tuple[int, ...]]:
        """The prompt ids of each row (left padding removed)."""
        return [] if self._rows is None else list(self._rows.prompts)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this AlignedConstraint is finished; make a new one with asap.constraint(grammar)")

    def _start(self, state: State) -> _Rows:
        x = state.x
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(f"ASAp needs token states (B, L) long, got {tuple(x.shape)} {x.dtype}")
        rows = x.tolist()
        mask = state.memory.get("attention_mask")
        if isinstance(mask, Tensor) and tuple(mask.shape) == tuple(x.shape):
            keep = mask.to(torch.bool).tolist()
            rows = [[t for t, k in zip(r, m, strict=True) if k] for r, m in zip(rows, keep, strict=True)]
        prompts = [tuple(r) for r in rows]
        return _Rows(
            prompts=prompts,
            nodes=[self.asap.trie.root(p) for p in prompts],
            tokens=[[] for _ in prompts],
            finished=[bool(d) for d in state.done.tolist()],
        )
