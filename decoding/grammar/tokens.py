"""The vocabulary as a byte matrix, and vectorised DFA runs over many tokens at once.

Every result is indexed by token id. Runs over the whole vocabulary step one byte column at a
time over tokens sorted by length (longest first), so column ``j`` only touches the tokens
longer than ``j``; runs over a subset gather each token's next byte from a flat matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from decoding.tokenizers.vocab import Vocabulary


@dataclass(frozen=True)
class RunResult:
    """Outcome of running tokens from a DFA state (arrays aligned with the ids that were run).

    Attributes:
        end: state after the token's last byte, or 0 where the lexeme ended inside the token.
        die_state: state just before the byte that ended the lexeme (0 where none did).
        die_pos: offset in the token of that byte.
    """

    end: np.ndarray
    die_state: np.ndarray
    die_pos: np.ndarray


class TokenMatrix:
    """Byte matrices of the vocabulary (special tokens have length 0 and never match).

    Attributes:
        vocab_size: ``V``, the width of a mask.
        lens: ``(V,)`` byte length per token id.
        flat: ``(V * W,)`` int32 bytes per id, zero padded to ``W`` (the longest token).
        order: ids sorted by length, longest first; ``cols[j]`` holds byte ``j`` in that order.
    """

    def __init__(self, vocab: Vocabulary) -> None:
        toks = [t or b"" for t in vocab.tokens]
        self.vocab_size = len(toks)
        self.bytes_of: list[bytes | None] = list(vocab.tokens)
        self.lens = np.array([len(t) for t in toks], dtype=np.int32)
        self.width = width = max(int(self.lens.max()) if toks else 1, 1)
        mat = np.frombuffer(b"".join(t.ljust(width, b"\0") for t in toks), dtype=np.uint8).reshape(-1, width)
        self.flat = mat.reshape(-1).astype(np.int32)
        self.order = np.argsort(-self.lens, kind="stable")
        self.cols = np.ascontiguousarray(mat[self.order].T).astype(np.int32)  # (W, V)
        sorted_lens = self.lens[self.order]
        # tokens longer than j are the prefix order[:active_count[j]]
        self.active_count = np.searchsorted(-sorted_lens, -np.arange(width), side="left")
        self.ids = np.flatnonzero(self.lens > 0)

    def run_all(self, delta: np.ndarray, q0: int, offset: int = 0) -> RunResult:
        """Run ``delta`` ``(S, 256)`` from ``q0`` over every token from byte ``offset``; ``(V,)`` by id.

        Tokens not longer than ``offset`` get ``end = 0``.
        """
        flat = delta.reshape(-1)
        v = self.vocab_size
        state = np.full(v, q0, dtype=np.int32)
        die_state = np.zeros(v, dtype=np.int32)
        die_pos = np.zeros(v, dtype=np.int32)
        alive: np.ndarray | None = None  # once most tokens are dead: the rows still running
        for j in range(offset, self.width):
            m = int(self.active_count[j])
            if m == 0:
                break
            if alive is None:
                cur = state[:m]
                ns = flat[(cur << 8) | self.cols[j, :m]]
                dead = (ns == 0) & (cur != 0)
                if dead.any():
                    d = np.flatnonzero(dead)
                    die_state[d] = cur[d]
                    die_pos[d] = j
                state[:m] = ns
                live = np.flatnonzero(ns)
                if live.size * 4 < m:
                    alive = live
            else:
                alive = alive[alive < m]  # rows are sorted by length: the long enough ones
                if not alive.size:
                    break
                cur = state[alive]
                ns = flat[(cur << 8) | self.cols[j, alive]]
                dead = ns == 0
                if dead.any():
                    d = alive[dead]
                    die_state[d] = cur[dead]
                    die_pos[d] = j
                state[alive] = ns
                alive = alive[~dead]
        inv = np.empty(v, dtype=np.int64)
        inv[self.order] = np.arange(v)
        end = state[inv]
        end[self.lens <= offset] = 0
        return RunResult(end, die_state[inv], die_pos[inv])

    def run(self, delta: np.ndarray, q0: int, ids: np.ndarray, pos: np.ndarray) -> RunResult:
        """Run ``delta`` from ``q0`` over tokens ``ids`` starting at byte offsets ``pos``."""
        flat = delta.reshape(-1)
        n = ids.shape[0]
        end = np.zeros(n, dtype=np.int32)
        die_state = np.zeros(n, dtype=np.int32)
        die_pos = np.zeros(n, dtype=np.int32)
        rem = self.lens[ids] - pos
        at = ids.astype(np.int64) * self.width + pos
        active = np.arange(n)
        cur = np.full(n, q0, dtype=np.int32)
        j = 0
        while active.size:
            keep = rem[active] > j
            if not keep.all():
                end[active[~keep]] = cur[~keep]
                active, cur = active[keep], cur[keep]
                if not active.size:
                    break
            ns = flat[(cur << 8) | self.flat[at[active] + j]]
            dead = ns == 0
            if dead.any():
                d = active[dead]
                die_state[d] = cur[dead]
                die_pos[d] = pos[d] + j
                alive = ~dead
                active, ns = active[alive], ns[alive]
            cur = ns
            j += 1
        return RunResult(end, die_state, die_pos)


_BY_IDENTITY: dict[int, tuple[Vocabulary, TokenMatrix]] = {}


def token_matrix(vocab: Vocabulary) -> TokenMatrix:
    """The :class:`TokenMatrix` of ``vocab`` (shared by every grammar compiled for it).

    Looked up by identity first: hashing a vocabulary hashes every token (0.1 ms for 49k tokens,
    a tenth of compiling a small schema); equal vocabularies still share one matrix.
    """
    hit = _BY_IDENTITY.get(id(vocab))
    if hit is not None and hit[0] is vocab:
        return hit[1]
    matrix = _token_matrix(vocab)
    if len(_BY_IDENTITY) >= 4:
        _BY_IDENTITY.pop(next(iter(_BY_IDENTITY)))
    _BY_IDENTITY[id(vocab)] = (vocab, matrix)  # holds vocab, so its id is not reused meanwhile
    return matrix


@lru_cache(maxsize=4)
def _token_matrix(vocab: Vocabulary) -> TokenMatrix:
    return TokenMatrix(vocab)
