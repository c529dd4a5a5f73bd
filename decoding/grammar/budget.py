"""Finishing inside the token budget: near the end, only tokens after which the grammar can still close.

A row with ``r`` tokens left (EOS included) must be able to write a shortest completion of its
text and then EOS. With a vocabulary that spells every byte as a token, a completion of ``c``
bytes takes at most ``c`` tokens, so the row can still finish when ``c + 1 <= r``. While ``r`` is
more than ``reserve`` tokens above that, the mask is left alone; inside that zone a token is
allowed only if the text after it can still be completed in ``r - 2`` bytes (EOS allowed when the
text is complete). The first byte of the shortest completion always passes, so once a row is
inside the zone it always finishes. Within the allowed set the model's distribution is kept
(it is renormalised over fewer tokens): this is sampling conditioned on finishing in time, and a
row it changed is reported (``limited``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from decoding.grammar.dfa import DEAD

if TYPE_CHECKING:
    from decoding.grammar.compiled import CompiledGrammar, State

INF = 1 << 30


class BudgetGuard:
    """Restricts a grammar mask so that the text can still be completed in the tokens left.

    Args:
        grammar: the compiled grammar (its :attr:`~decoding.grammar.compiled.CompiledGrammar.completer`
            gives shortest completions).
        reserve: how many tokens before the last possible moment the check starts. A token outside
            the zone that raises the completion length by more than this (e.g. a token of many
            opening brackets) can still leave a row unable to finish.
    """

    def __init__(self, grammar: CompiledGrammar, reserve: int = 16) -> None:
        if reserve < 0:
            raise ValueError(f"reserve must be >= 0, got {reserve}")
        self.g = grammar
        self.reserve = reserve
        self._ids_of: dict[bytes, list[int]] | None = None

    def completion_bytes(self, state: State) -> int:
        """Length of a shortest completion of ``state`` (``INF`` when none is known)."""
        c = self.g.completer.complete(state)
        return INF if c is None else len(c)

    def filter(self, state: State, mask: torch.Tensor, remaining: int) -> tuple[torch.Tensor, bool]:
        """``(mask, changed)``: ``mask`` ``(V,)`` bool restricted to tokens that keep finishing possible.

        Args:
            state: the row's grammar state.
            mask: the grammar's mask for ``state`` (not modified).
            remaining: tokens the row may still emit, EOS included.
        """
        g = self.g
        completion = g.completer.complete(state)
        if completion is None or remaining < len(completion) + 1 or remaining > len(completion) + 1 + self.reserve:
            return mask, False
        allowed = mask.numpy()
        ids = np.flatnonzero(allowed)
        eos = g.eos_token_id
        ids = ids[ids != eos] if eos is not None else ids
        cost = self._costs_after(state, ids)
        for t, bound in self._prefix_tokens(completion):
            hit = np.searchsorted(ids, t)
            if hit < ids.size and ids[hit] == t:
                cost[hit] = min(cost[hit], bound)
        bad = ids[cost > remaining - 2]
        if not bad.size:
            return mask, False
        out = allowed.copy()
        out[bad] = False
        return torch.from_numpy(out), True

    def _costs_after(self, state: State, ids: np.ndarray) -> np.ndarray:
        """Shortest-completion length after each token of ``ids`` (sorted allowed token ids)."""
        g = self.g
        sid, q = state
        ends = g._root(g.ctx_of(sid), q).end[ids]
        cost = np.full(ids.size, INF, dtype=np.int64)
        stay = ends != DEAD
        for e in np.unique(ends[stay]).tolist():
            cost[ends == e] = self.completion_bytes((sid, int(e)))
        bytes_of = g.tokens.bytes_of
        for k in np.flatnonzero(~stay).tolist():
            nxt = g.step_bytes(state, bytes_of[int(ids[k])])  # not step_token: its memo would grow per state
            if nxt is not None:
                cost[k] = self.completion_bytes(nxt)
        return cost

    def _prefix_tokens(self, completion: bytes) -> list[tuple[int, int]]:
        """``(token id, bytes left)`` for the tokens that spell a prefix of ``completion``."""
        if self._ids_of is None:
            ids_of: dict[bytes, list[int]] = {}
            for t, b in enumerate(self.g.tokens.bytes_of):
                if b:
                    ids_of.setdefault(b, []).append(t)
            self._ids_of = ids_of
        out = []
        for n in range(1, len(completion) + 1):
            for t in self._ids_of.get(completion[:n], ()):
                out.append((t, len(completion) - n))
        return out
