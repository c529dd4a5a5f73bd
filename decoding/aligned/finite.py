"""A finite language of token sequences as a :class:`~decoding.core.protocols.Constraint`.

The language is a set of token sequences (each implicitly followed by EOS). Its prefix trie gives,
for every reachable prefix, the exact set of allowed next tokens, so the mask is sound and
complete by construction. Grammar-aligned decoding (Park et al., arXiv 2405.21047) uses such
small languages to check exactness: the ideal conditional distribution can be enumerated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from decoding.core.types import State

Prefix = tuple[int, ...]
_ENDED = None  # the per-row marker for "EOS was accepted"


class FiniteLanguage:
    """A set of token sequences over a vocabulary of ``vocab_size`` ids, ending with ``eos_token_id``.

    Args:
        sequences: the sentences, as token ids without EOS (duplicates are dropped, order kept).
        vocab_size: ``V``; masks are ``(B, V)``.
        eos_token_id: the token that ends a sentence (never inside one).
    """

    def __init__(self, sequences: Iterable[Sequence[int]], vocab_size: int, eos_token_id: int) -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        if not 0 <= eos_token_id < vocab_size:
            raise ValueError(f"eos_token_id {eos_token_id} is outside the vocabulary [0, {vocab_size})")
        seen: dict[Prefix, None] = {}
        for seq in sequences:
            s = tuple(int(t) for t in seq)
            bad = [t for t in s if not 0 <= t < vocab_size]
            if bad:
                raise ValueError(f"sequence {list(s)} has token ids {bad} outside [0, {vocab_size})")
            if eos_token_id in s:
                raise ValueError(f"sequence {list(s)} contains the EOS id {eos_token_id}; leave EOS out")
            seen[s] = None
        if not seen:
            raise ValueError("a finite language needs at least one sequence")
        self.sequences: list[Prefix] = list(seen)
        self._members = set(self.sequences)
        self.vocab_size = int(vocab_size)
        self.eos_token_id = int(eos_token_id)
        allowed: dict[Prefix, dict[int, None]] = {}
        for s in self.sequences:
            for i in range(len(s)):
                allowed.setdefault(s[:i], {})[s[i]] = None
            allowed.setdefault(s, {})[self.eos_token_id] = None
        self.allowed: dict[Prefix, list[int]] = {p: list(toks) for p, toks in allowed.items()}

    @classmethod
    def from_strings(
        cls, strings: Iterable[str], tokenizer: Any, eos_token_id: int | None = None
    ) -> FiniteLanguage:
        """Each string tokenized once (``tokenizer.encode(s, add_special_tokens=False)``)."""
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id")
        seqs = [tokenizer.encode(s, add_special_tokens=False) for s in strings]
        return cls(seqs, vocab_size=len(tokenizer), eos_token_id=int(eos))

    def __len__(self) -> int:
        return len(self.sequences)

    def __contains__(self, seq: Sequence[int]) -> bool:
        return tuple(int(t) for t in seq) in self._members

    def constraint(self, batch_size: int) -> FiniteConstraint:
        """A fresh constraint for ``batch_size`` rows, all at the empty prefix."""
        return FiniteConstraint(self, batch_size)


class FiniteConstraint:
    """Per-row position in a :class:`FiniteLanguage`; implements the ``Constraint`` protocol.

    After EOS a row allows only EOS again (finished rows stay well defined); ``-1`` tokens
    (rows that emitted nothing) leave a row unchanged.
    """

    def __init__(self, language: FiniteLanguage, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.language = language
        self.rows: list[Prefix | None] = [()] * batch_size
        self._history: list[list[Prefix | None]] = []
        self._masks: dict[Prefix | None, Tensor] = {}

    def _row_mask(self, prefix: Prefix | None) -> Tensor:
        m = self._masks.get(prefix)
        if m is None:
            m = torch.zeros(self.language.vocab_size, dtype=torch.bool)
            toks = [self.language.eos_token_id] if prefix is _ENDED else self.language.allowed[prefix]
            m[toks] = True
            self._masks[prefix] = m
        return m

    def mask(self, state: State | None = None) -> Tensor:
        """``(B, V)`` bool on the CPU: True where the token keeps the row inside the language."""
        return torch.stack([self._row_mask(p) for p in self.rows])

    def advance(self, tokens: Tensor) -> None:
        """Feed ``tokens`` ``(B,)``; raises ValueError for a token the language does not allow."""
        toks = tokens.tolist()
        if len(toks) != len(self.rows):
            raise ValueError(f"advance got {len(toks)} tokens for a batch of {len(self.rows)} rows")
        new: list[Prefix | None] = []
        for b, (p, t) in enumerate(zip(self.rows, toks, strict=True)):
            if t < 0:
                new.append(p)
                continue
            allowed = [self.language.eos_token_id] if p is _ENDED else self.language.allowed[p]
            if t not in allowed:
                raise ValueError(f"row {b}: token {t} is not allowed after prefix {p}; allowed: {allowed}")
            new.append(_ENDED if (p is _ENDED or t == self.language.eos_token_id) else (*p, t))
        self._history.append(self.rows)
        self.rows = new

    def is_complete(self) -> Tensor:
        """``(B,)`` bool: the row's prefix is a sentence (or EOS was accepted)."""
        eos = self.language.eos_token_id
        return torch.tensor([p is _ENDED or eos in self.language.allowed[p] for p in self.rows])

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` calls of :meth:`advance`."""
        if not 0 <= n <= len(self._history):
            raise ValueError(f"cannot roll back {n} steps: {len(self._history)} were taken")
        for _ in range(n):
            self.rows = self._history.pop()

    def fork(self) -> FiniteConstraint:
        """An independent copy at the same position."""
        other = FiniteConstraint(self.language, len(self.rows))
        other.rows = list(self.rows)
        other._history = [list(h) for h in self._history]
        other._masks = self._masks
        return other
