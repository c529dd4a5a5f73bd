"""ASAp, adaptive sampling with approximate expected futures (Park et al., arXiv 2405.21047).

Constrained decoding samples ``P(v | u) * 1[v allowed]`` at each step, which distorts the model's
distribution over whole sentences. ASAp samples instead

    Q(v | u)  ∝  P(v | u) * c(u v) * 1[v allowed]

where ``c`` is an over-approximation of the expected future grammaticality kept in a trie
(:mod:`decoding.aligned.trie`) and refined after every sample. Once every sentence that the
sampler can reach has been seen, ``c`` is exact and ``Q`` is the model's distribution conditioned
on the grammar.

Usage with the decode loop (one :class:`AlignedSession` per ``decode`` call; the :class:`ASAp`
object and its trie outlive them)::

    asap = ASAp(eos_token_id=eos)
    session = asap.session(constraint)                  # constraint: a fresh Constraint for B rows
    result = decode(model, Autoregressive(eos_token_id=eos), prompt, steps=n,
                    processors=[*processors, session], constraint=session.constraint)
    sequences = session.finish(result.state)            # updates the trie, rows in row order

Batches: every row of one ``decode`` call samples from the same ``Q`` (the trie as it was when
the call began); :meth:`AlignedSession.finish` then updates the trie with row 0, row 1, ... in
order. The final estimates do not depend on that order (each node is recomputed from its children
after all of its descendants), and the order fixes the floating-point summation, so a given seed
always gives the same trie. Batch size 1 is the paper's algorithm exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

from decoding.aligned.store import TrieFile, load_trie, save_trie
from decoding.aligned.trie import Node, PrefixTrie
from decoding.core.protocols import Constraint
from decoding.core.types import State


def _eos_ids(eos_token_id: int | Sequence[int]) -> tuple[int, ...]:
    ids = (eos_token_id,) if isinstance(eos_token_id, int) else tuple(int(t) for t in eos_token_id)
    if not ids or any(t < 0 for t in ids):
        raise ValueError(f"eos_token_id must be one or more non-negative token ids, got {eos_token_id!r}")
    return ids


class ASAp:
    """The sampler's memory: a trie of expected-future-grammaticality estimates.

    Args:
        eos_token_id: the id(s) that end a sentence; their trie nodes have estimate 1.
        signature: free text naming what the trie belongs to (model, grammar, processors);
            checked by :meth:`load` so that a trie is not reused for another distribution.
    """

    def __init__(self, eos_token_id: int | Sequence[int], *, signature: str = "") -> None:
        self.eos_token_ids = _eos_ids(eos_token_id)
        self.signature = str(signature)
        self.trie = PrefixTrie()
        self.samples = 0

    def session(self, constraint: Constraint) -> AlignedSession:
        """A processor + constraint pair for one ``decode`` call over ``constraint``'s batch."""
        return AlignedSession(self, constraint)

    def update(self, prompts: Sequence[Sequence[int]], sequences: Sequence[Sequence[int]]) -> None:
        """Refine the estimates along each sampled sequence, in the given (row) order.

        Args:
            prompts: the prompt ids of each row (the tree the row belongs to).
            sequences: the generated ids of each row (EOS included if the row ended).
        """
        if len(prompts) != len(sequences):
            raise ValueError(f"update got {len(prompts)} prompts for {len(sequences)} sequences")
        for prompt, seq in zip(prompts, sequences, strict=True):
            self.trie.update(prompt, seq)
            self.samples += 1

    def efg(self, prompt: Sequence[int], prefix: Sequence[int]) -> float:
        """The current estimate ``c(prefix)`` (1 for a prefix never visited)."""
        return self.trie.efg(prompt, prefix)

    def next_token_probs(
        self, prompt: Sequence[int], prefix: Sequence[int], logprobs: Tensor, allowed: Tensor
    ) -> Tensor:
        """ASAp's next-token distribution after ``prefix``.

        Args:
            logprobs: ``(V,)`` the model's next-token log-probabilities.
            allowed: ``(V,)`` bool, the grammar's mask.

        Returns:
            ``(V,)`` float64 probabilities ``∝ P(v) c(prefix v) 1[allowed]``.
        """
        w = logprobs.to(torch.float64).exp() * allowed.to(torch.float64)
        node = self.trie.find(prompt, prefix)
        if node is not None:
            for t, c in node.children.items():
                w[t] = w[t] * c.efg
        total = w.sum()
        if not total > 0:
            raise ValueError(f"no allowed token has positive weight after prefix {list(prefix)}")
        return w / total

    def reset(self) -> None:
        """Forget everything learned (back to plain constrained decoding)."""
        self.trie.clear()
        self.samples = 0

    @property
    def num_nodes(self) -> int:
        return len(self.trie)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the trie to ``path`` (safetensors, format version 1; see :mod:`decoding.aligned.store`)."""
        save_trie(path, TrieFile(self.trie, self.eos_token_ids, self.signature, self.samples))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        signature: str | None = None,
        eos_token_id: int | Sequence[int] | None = None,
    ) -> ASAp:
        """Read a trie saved by :meth:`save`; ``signature`` / ``eos_token_id``, when given, must match."""
        data = load_trie(path)
        if signature is not None and signature != data.signature:
            raise ValueError(
                f"trie {path} belongs to {data.signature!r}, not {signature!r}: use another --trie path"
            )
        if eos_token_id is not None and _eos_ids(eos_token_id) != data.eos_token_ids:
            raise ValueError(f"trie {path} uses EOS ids {list(data.eos_token_ids)}, not {eos_token_id!r}")
        out = cls(data.eos_token_ids, signature=data.signature)
        out.trie = data.trie
        out.samples = data.samples
        return out

    def __repr__(self) -> str:
        return f"ASAp(samples={self.samples}, prompts={len(self.trie.roots)}, eos={list(self.eos_token_ids)})"


class SessionConstraint:
    """Wraps the user's constraint for one session: caches the mask per state so the processor
    and the loop compute it once, and counts the steps it advanced."""

    def __init__(self, inner: Constraint) -> None:
        self.inner = inner
        self.advanced = 0
        self._state: State | None = None
        self._mask: Tensor | None = None

    def mask(self, state: State) -> Tensor:
        if self._mask is None or state is not self._state:
            self._mask = self.inner.mask(state)
            self._state = state
        return self._mask

    def advance(self, tokens: Tensor) -> None:
        self.inner.advance(tokens)
        self.advanced += 1
        self._mask = self._state = None

    def is_complete(self) -> Tensor:
        return self.inner.is_complete()

    def rollback(self, n: int) -> None:
        self.inner.rollback(n)
        self.advanced -= n
        self._mask = self._state = None

    def fork(self) -> SessionConstraint:
        other = SessionConstraint(self.inner.fork())
        other.advanced = self.advanced
        return other


class AlignedSession:
    """ASAp for one ``decode`` call: a logits processor plus :attr:`constraint` for the loop.

    As a processor (put it last among the processors) it records the model's probabilities in
    the trie and adds ``log c(u v)`` to the logit of every visited child ``v`` of each row's
    prefix ``u`` (unvisited children have ``c = 1``: nothing to add); the loop then masks with
    :attr:`constraint`, so it samples exactly ``Q(v | u) ∝ P(v | u) c(u v) 1[v allowed]``.
    It needs an autoregressive process (one new token per row per step). Call :meth:`finish`
    once after ``decode``. (A row whose allowed children all had estimate 0, impossible with a
    sound mask unless probabilities underflow, would fall back to the loop's masked raw logits.)
    """

    def __init__(self, asap: ASAp, constraint: Constraint) -> None:
        self.asap = asap
        self.constraint = SessionConstraint(constraint)
        self._plen = -1
        self._prompts: list[tuple[int, ...]] = []
        self._nodes: list[Node] = []
        self._tokens: list[list[int]] = []
        self._finished: list[bool] = []
        self._last_logp: tuple[Tensor, dict[int, float]] | None = None  # (B, V) float64, row -> logsumexp
        self._closed = False

    def _start(self, state: State) -> None:
        x = state.x
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(f"ASAp needs token states (B, L) long, got {tuple(x.shape)} {x.dtype}")
        b, p = x.shape
        mask = state.memory.get("attention_mask")
        rows = x.tolist()
        if isinstance(mask, Tensor) and tuple(mask.shape) == (b, p):
            keep = mask.to(torch.bool).tolist()
            rows = [[t for t, k in zip(r, m, strict=True) if k] for r, m in zip(rows, keep, strict=True)]
        self._plen = p
        self._prompts = [tuple(r) for r in rows]
        self._nodes = [self.asap.trie.root(r) for r in self._prompts]
        self._tokens = [[] for _ in range(b)]
        self._finished = [bool(d) for d in state.done.tolist()]

    def _sync(self, state: State) -> None:
        """Walk each unfinished row down the trie by the token the last step appended."""
        length = state.x.shape[1]
        pending = [
            b for b, f in enumerate(self._finished) if not f and self._plen + len(self._tokens[b]) < length
        ]
        if not pending:
            return
        if any(self._plen + len(self._tokens[b]) != length - 1 for b in pending) or self._last_logp is None:
            raise ValueError(
                "ASAp needs exactly one new token per row per step (an autoregressive process) and a "
                "model call before it; did the state skip a step?"
            )
        toks = state.x[:, length - 1].tolist()
        ld, lse = self._last_logp
        done = state.done.tolist()
        eos = self.asap.eos_token_ids
        for b in pending:
            t = toks[b]
            node = self._nodes[b].children.get(t)
            if node is None:  # a new child: its raw probability P(t | prefix) from the last logits
                if b not in lse:
                    lse[b] = float(torch.logsumexp(ld[b], dim=-1))
                node = self._nodes[b].child(t, math.exp(float(ld[b, t]) - lse[b]), t in eos)
            self._nodes[b] = node
            self._tokens[b].append(t)
            if node.terminal or done[b]:
                self._finished[b] = True

    def __call__(self, logits: Tensor, state: State) -> Tensor:
        """``logits`` ``(B, V)`` -> ``(B, V)`` reweighted logits.

        A new float32 tensor when some row has a visited child with estimate below 1, else
        ``logits`` itself (never modified).
        """
        if self._closed:
            raise ValueError("this ASAp session is finished; start a new one with asap.session(constraint)")
        if logits.dim() != 2:
            raise ValueError(f"ASAp needs next-token logits (B, V), got shape {tuple(logits.shape)}")
        if self._plen < 0:
            self._start(state)
        if logits.shape[0] != len(self._nodes):
            raise ValueError(
                f"logits have {logits.shape[0]} rows, the session started with {len(self._nodes)}"
            )
        if self.constraint.advanced != state.step:
            raise ValueError(
                "pass session.constraint as decode()'s constraint (it advanced "
                f"{self.constraint.advanced} times at step {state.step})"
            )
        self._sync(state)
        allowed = self.constraint.mask(state).to(logits.device)
        ld = logits.to(torch.float64, copy=True)  # kept for the next step's new children
        live = [b for b, f in enumerate(self._finished) if not f]
        need = [b for b in live if not self._nodes[b].evaluated]
        lse: dict[int, float] = {}
        if need:
            if len(need) == ld.shape[0]:
                a, row = allowed, ld
            else:
                idx = torch.tensor(need, device=logits.device)
                a, row = allowed[idx], ld[idx]
            full = torch.logsumexp(row, dim=-1)
            masses = ((row - full[:, None]).exp() * a).sum(-1).tolist()  # (masked_fill is slower on CPU)
            counts = torch.count_nonzero(a, dim=-1).tolist()
            for b, m, c, f in zip(need, masses, counts, full.tolist(), strict=True):
                self._nodes[b].record(m, c)
                lse[b] = f
        self._last_logp = (ld, lse)
        rows, toks, vals = [], [], []
        for b in live:
            adj = self._nodes[b].adjustments()
            if adj is not None:
                rows.append(torch.full_like(adj[0], b))
                toks.append(adj[0])
                vals.append(adj[1])
        if not rows:
            return logits
        out = logits.to(torch.float32, copy=True)
        dev = out.device
        out.index_put_(
            (torch.cat(rows).to(dev), torch.cat(toks).to(dev)), torch.cat(vals).to(dev), accumulate=True
        )
        return out

    def finish(self, state: State) -> list[list[int]]:
        """Record the last step's tokens, update the trie (rows in order) and return each row's tokens.

        Returns:
            per row, the generated token ids (EOS included when the row ended with it).
        """
        if self._closed:
            raise ValueError("finish() was already called for this session")
        if self._plen < 0:
            raise ValueError("the session was never called: pass it to decode() as a processor first")
        self._sync(state)
        self._closed = True
        self.asap.update(self._prompts, self._tokens)
        return [list(t) for t in self._tokens]

    @property
    def prompts(self) -> list[tuple[int, ...]]:
        """The prompt ids of each row (left padding removed)."""
        return list(self._prompts)
