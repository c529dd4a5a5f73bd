"""A batch of grammar matchers as a :class:`decoding.core.protocols.Constraint`."""

from __future__ import annotations

import torch
from torch import Tensor

from decoding.core.types import State
from decoding.grammar.budget import BudgetGuard
from decoding.grammar.compiled import CompiledGrammar
from decoding.grammar.matcher import GrammarMatcher


class GrammarConstraint:
    """One :class:`GrammarMatcher` per batch row.

    ``advance`` takes the tokens the last step emitted (``-1``: the row emitted nothing);
    every call is one step for :meth:`rollback`, whatever each row did. Masks are cached per
    grammar state on ``device``, so after warm-up no mask crosses from host to device.

    With ``max_tokens``, every row finishes a sentence within that many tokens (EOS included)
    whenever the budget allows its shortest completion at all: see
    :class:`~decoding.grammar.budget.BudgetGuard`. :attr:`limited` tells which rows the guard
    restricted.

    Args:
        grammar: the compiled grammar.
        batch_size: number of rows ``B``.
        device: where :meth:`mask` returns its ``(B, V)`` tensor (default CPU).
        max_tokens: the token budget of every row, or ``None`` (rows may stop incomplete).
        reserve: tokens before the last moment at which the guard starts checking.
    """

    def __init__(
        self,
        grammar: CompiledGrammar,
        batch_size: int,
        device: torch.device | str | None = None,
        max_tokens: int | None = None,
        reserve: int = 16,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.grammar = grammar
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.matchers = [GrammarMatcher(grammar) for _ in range(batch_size)]
        self.steps: list[list[bool]] = []  # per advance: which rows accepted a token
        self._on_device: dict[object, Tensor] = {}
        self.max_tokens = max_tokens
        self.guard = BudgetGuard(grammar, reserve) if max_tokens is not None else None
        # per row: the number of tokens it had accepted when the guard first restricted it (-1: never)
        self._limited_at = [-1] * batch_size

    @property
    def limited(self) -> list[bool]:
        """Per row: whether the budget guard removed a token the grammar alone would allow."""
        return [k >= 0 for k in self._limited_at]

    @property
    def batch_size(self) -> int:
        return len(self.matchers)

    def _row_mask(self, i: int, m: GrammarMatcher) -> Tensor:
        if self.guard is not None and not m.finished:
            used = len(m.pieces)
            mask, changed = self.guard.filter(m.state, m.mask(), self.max_tokens - used)
            if changed:
                if self._limited_at[i] < 0:
                    self._limited_at[i] = used
                return mask.to(self.device)
        if self.device.type == "cpu":
            return m.mask()
        key = ("eos",) if m.finished else m.state
        t = self._on_device.get(key)
        if t is None:
            if len(self._on_device) >= self.grammar.mask_cache_size:
                self._on_device.clear()
            t = self._on_device[key] = m.mask().to(self.device)
        return t

    def mask(self, state: State | None = None) -> Tensor:
        """``(B, V)`` bool on ``self.device``: True where the token is allowed next."""
        if state is not None and state.batch_size != self.batch_size:
            raise ValueError(f"state has batch size {state.batch_size}, constraint {self.batch_size}")
        return torch.stack([self._row_mask(i, m) for i, m in enumerate(self.matchers)])

    def advance(self, tokens: Tensor) -> None:
        """Feed ``tokens`` ``(B,)`` (``-1`` = no token for that row)."""
        ids = tokens.reshape(-1).tolist()
        if len(ids) != self.batch_size:
            raise ValueError(f"advance got {len(ids)} tokens for a batch of {self.batch_size}")
        took = []
        for m, t in zip(self.matchers, ids, strict=False):
            if t >= 0:
                m.accept_token(t)
            took.append(t >= 0)
        self.steps.append(took)

    def is_complete(self) -> Tensor:
        """``(B,)`` bool: the row's text is a complete sentence (or it accepted EOS)."""
        return torch.tensor([m.is_complete() for m in self.matchers], dtype=torch.bool)

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` calls to :meth:`advance` in every row."""
        if n < 0 or n > len(self.steps):
            raise ValueError(f"cannot roll back {n} steps: {len(self.steps)} taken")
        for _ in range(n):
            for m, took in zip(self.matchers, self.steps.pop(), strict=False):
                if took:
                    m.rollback(1)
        for i, m in enumerate(self.matchers):
            if self._limited_at[i] >= len(m.pieces):
                self._limited_at[i] = -1

    def fork(self) -> GrammarConstraint:
        """An independent copy sharing the compiled grammar and its caches."""
        c = GrammarConstraint(self.grammar, self.batch_size, self.device)
        c.max_tokens, c.guard = self.max_tokens, self.guard
        c._limited_at = list(self._limited_at)
        c.matchers = [m.fork() for m in self.matchers]
        c.steps = [list(s) for s in self.steps]
        c._on_device = self._on_device
        return c

    def texts(self) -> list[str]:
        """The text of every row so far."""
        return [m.text() for m in self.matchers]
