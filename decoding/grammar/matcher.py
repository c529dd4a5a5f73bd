"""One sequence's grammar state: mask, accept a token, roll back, fork, is-complete.

The state is a pair of ints (parser stack id, lexer DFA state) owned by a
:class:`~decoding.grammar.compiled.CompiledGrammar`, so forking copies a short list and
rolling back pops it, like XGrammar's ``GrammarMatcher`` (arXiv:2411.15100).
"""

from __future__ import annotations

import numpy as np
import torch

from decoding.grammar.compiled import CompiledGrammar, State


class GrammarDeadEnd(RuntimeError):
    """No token can continue the text and it is not complete: the grammar cannot be finished."""


class GrammarMatcher:
    """A single sequence under a compiled grammar.

    Args:
        grammar: the compiled grammar (shared, with its caches, by every matcher).
    """

    def __init__(self, grammar: CompiledGrammar) -> None:
        self.grammar = grammar
        self.history: list[State] = [grammar.initial]
        self.pieces: list[bytes] = []  # bytes each accepted step added (EOS adds b"")
        self.finished = False  # EOS accepted

    @property
    def state(self) -> State:
        return self.history[-1]

    def mask(self) -> torch.Tensor:
        """``(V,)`` bool, True where the token is allowed next (a shared tensor: do not modify).

        After EOS only EOS is allowed. Raises :class:`GrammarDeadEnd` when nothing is allowed.
        """
        g = self.grammar
        if self.finished:
            return self._eos_only()
        m, nonempty = g.mask_entry(self.state)
        if not nonempty:
            raise GrammarDeadEnd(
                f"grammar {g.name}: no token can continue {self.text()!r} and it is not complete; "
                f"{g.expected(self.state)}"
            )
        return m

    def bitmask(self) -> torch.Tensor:
        """``(ceil(V / 32),)`` int32 bitmask (bit ``i % 32`` of word ``i // 32`` is token ``i``)."""
        m = self.mask().numpy()
        pad = (-m.shape[0]) % 32
        bits = np.packbits(np.concatenate([m, np.zeros(pad, dtype=bool)]), bitorder="little")
        return torch.from_numpy(bits.view(np.int32).copy())

    def _eos_only(self) -> torch.Tensor:
        m = torch.zeros(self.grammar.vocab_size, dtype=torch.bool)
        m[self.grammar.eos_token_id] = True
        return m

    def accept_token(self, token_id: int) -> None:
        """Advance by one token. Raises ``ValueError`` if the grammar does not allow it."""
        g = self.grammar
        token_id = int(token_id)
        if self.finished:
            raise ValueError(f"token {token_id} after EOS: the sequence is finished (roll back first)")
        if token_id == g.eos_token_id:
            if not g.is_complete(self.state):
                raise ValueError(
                    f"EOS is not allowed: {self.text()!r} is not a complete sentence of {g.name}"
                )
            self._push(self.state, b"")
            self.finished = True
            return
        nxt = g.step_token(self.state, token_id)
        if nxt is None:
            tok = g.tokens.bytes_of[token_id] if 0 <= token_id < g.vocab_size else None
            raise ValueError(
                f"token {token_id} ({tok!r}) is not allowed after {self.text()!r} by grammar {g.name}; "
                f"{g.expected(self.state)}"
            )
        self._push(nxt, g.tokens.bytes_of[token_id] or b"")

    def accept_bytes(self, data: bytes) -> None:
        """Advance by raw bytes (one step for rollback). Raises ``ValueError`` if not allowed."""
        if self.finished:
            raise ValueError("bytes after EOS: the sequence is finished (roll back first)")
        nxt = self.grammar.step_bytes(self.state, data)
        if nxt is None:
            raise ValueError(f"{data!r} is not allowed after {self.text()!r} by grammar {self.grammar.name}")
        self._push(nxt, data)

    def _push(self, state: State, data: bytes) -> None:
        self.history.append(state)
        self.pieces.append(data)

    def text(self) -> str:
        """The text accepted so far (invalid UTF-8 shown with replacement characters)."""
        return b"".join(self.pieces).decode("utf-8", "replace")

    def is_complete(self) -> bool:
        """Whether the text so far is a sentence (or EOS was accepted)."""
        return self.finished or self.grammar.is_complete(self.state)

    def rollback(self, n: int = 1) -> None:
        """Undo the last ``n`` accepted steps (EOS counts as one)."""
        if n < 0 or n > len(self.pieces):
            raise ValueError(f"cannot roll back {n} tokens: {len(self.pieces)} accepted")
        for _ in range(n):
            self.history.pop()
            self.pieces.pop()
            self.finished = False

    def fork(self) -> GrammarMatcher:
        """An independent copy (the grammar and its caches are shared)."""
        m = GrammarMatcher(self.grammar)
        m.history = list(self.history)
        m.pieces = list(self.pieces)
        m.finished = self.finished
        return m
