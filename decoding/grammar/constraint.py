"""A batch of grammar matchers as a :class:`decoding.core.protocols.Constraint`."""

from __future__ import annotations

import torch
from torch import Tensor

from decoding.core.types import State
from decoding.grammar.compiled import CompiledGrammar
from decoding.grammar.matcher import GrammarMatcher


class GrammarConstraint:
    """One :class:`GrammarMatcher` per batch row.

    ``advance`` takes the tokens the last step emitted (``-1``: the row emitted nothing);
    every call is one step for :meth:`rollback`, whatever each row did. Masks are cached per
    grammar state on ``device``, so after warm-up no mask crosses from host to device.

    Args:
        grammar: the compiled grammar.
        batch_size: number of rows ``B``.
        device: where :meth:`mask` returns its ``(B, V)`` tensor (default CPU).
    """

    def __init__(self, grammar: CompiledGrammar, batch_size: int, device: torch.device | str | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.grammar = grammar
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.matchers = [GrammarMatcher(grammar) for _ in range(batch_size)]
        self.steps: list[list[bool]] = []  # per advance: which rows accepted a token
        self._on_device: dict[object, Tensor] = {}

    @property
    def batch_size(self) -> int:
        return len(self.matchers)

    def _row_mask(self, m: GrammarMatcher) -> Tensor:
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
        return torch.stack([self._row_mask(m) for m in self.matchers])

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

    def fork(self) -> GrammarConstraint:
        """An independent copy sharing the compiled grammar and its caches."""
        c = GrammarConstraint(self.grammar, self.batch_size, self.device)
        c.matchers = [m.fork() for m in self.matchers]
        c.steps = [list(s) for s in self.steps]
        c._on_device = self._on_device
        return c

    def texts(self) -> list[str]:
        """The text of every row so far."""
        return [m.text() for m in self.matchers]
