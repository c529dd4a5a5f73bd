"""ASAp, adaptive sampling with approximate expected futures (Park et al., arXiv 2405.21047).

Constrained decoding samples ``P(v | u) * 1[v allowed]`` at each step, which distorts the model's
distribution over whole sentences. ASAp samples instead

    Q(v | u)  ∝  P(v | u) * c(u v) * 1[v allowed]

where ``c`` is an over-approximation of the expected future grammaticality kept in a trie
(:mod:`decoding.aligned.trie`) and refined after every sample. Once every sentence that the
sampler can reach has been seen, ``c`` is exact and ``Q`` is the model's distribution conditioned
on the grammar.

Usage with the decode loop (one :class:`~decoding.aligned.constraint.AlignedConstraint` per
``decode`` call; the :class:`ASAp` object and its trie outlive them)::

    asap = ASAp(eos_token_id=eos)
    aligned = asap.constraint(grammar_constraint)       # a fresh grammar Constraint for B rows
    result = decode(model, Autoregressive(eos_token_id=eos), prompt, steps=n,
                    processors=processors, constraint=aligned)
    sequences = aligned.finish()                        # updates the trie, rows in row order

Batches: every row of one ``decode`` call samples from the same ``Q`` (the trie as it was when
the call began); :meth:`~decoding.aligned.constraint.AlignedConstraint.finish` then updates the
trie with row 0, row 1, ... in order. The final estimates do not depend on that order (each node is recomputed from its children
after all of its descendants), and the order fixes the floating-point summation, so a given seed
always gives the same trie. Batch size 1 is the paper's algorithm exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from decoding.aligned.store import TrieFile, load_trie, save_trie
from decoding.aligned.trie import PrefixTrie
from decoding.core.protocols import Constraint

if TYPE_CHECKING:
    from decoding.aligned.constraint import AlignedConstraint


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

    def constraint(self, grammar: Constraint) -> AlignedConstraint:
        """The constraint for one ``decode`` call over ``grammar``'s batch: masks with ``grammar``
        and reweights the logits by the trie's estimates."""
        from decoding.aligned.constraint import AlignedConstraint

        return AlignedConstraint(self, grammar)

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
