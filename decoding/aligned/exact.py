"""Exact sentence distributions over a finite language, for checking grammar-aligned decoding (arXiv 2405.21047).

Given the model's next-token log-probabilities at every prefix of a :class:`FiniteLanguage`,
enumerate three distributions over its sentences (each followed by EOS):

- ``ideal``: the model conditioned on the language, ``P(s EOS) / sum_s' P(s' EOS)``;
- ``constrained``: what plain grammar-constrained decoding samples (renormalize at each step);
- ``aligned``: what ASAp samples with its current trie (``None`` without a trie).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from decoding.aligned.asap import ASAp
from decoding.aligned.finite import FiniteLanguage, Prefix
from decoding.core.protocols import Constraint
from decoding.core.types import State

NextLogprobs = Callable[[Prefix], Tensor]


@dataclass(frozen=True)
class LanguageDistributions:
    """Probabilities ``(N,)`` float64 over ``language.sequences`` (same order)."""

    ideal: Tensor
    constrained: Tensor
    aligned: Tensor | None
    log_p: Tensor  # (N,) the model's log P(s EOS | prompt), unnormalized over the language


def distributions(
    language: FiniteLanguage,
    next_logprobs: NextLogprobs,
    *,
    asap: ASAp | None = None,
    prompt: Sequence[int] = (),
) -> LanguageDistributions:
    """Enumerate the distributions; ``next_logprobs(prefix)`` is called once per prefix.

    Args:
        language: the sentences.
        next_logprobs: ``prefix -> (V,)`` log-probabilities of the model's next token after
            ``prompt + prefix`` (normalized over the whole vocabulary).
        asap: a trie to evaluate ASAp's current sampling distribution.
        prompt: the prompt ids the trie is keyed by.
    """
    cache: dict[Prefix, Tensor] = {}

    def lp(prefix: Prefix) -> Tensor:
        if prefix not in cache:
            row = next_logprobs(prefix).to(torch.float64).cpu()
            if row.shape != (language.vocab_size,):
                raise ValueError(
                    f"next_logprobs returned shape {tuple(row.shape)}, expected ({language.vocab_size},)"
                )
            cache[prefix] = row
        return cache[prefix]

    allowed_mask: dict[Prefix, Tensor] = {}
    aligned_q: dict[Prefix, Tensor] = {}

    def mask(prefix: Prefix) -> Tensor:
        if prefix not in allowed_mask:
            m = torch.zeros(language.vocab_size, dtype=torch.bool)
            m[language.allowed[prefix]] = True
            allowed_mask[prefix] = m
        return allowed_mask[prefix]

    log_p, log_c, log_a = [], [], []
    eos = language.eos_token_id
    for s in language.sequences:
        steps = [(s[:i], s[i]) for i in range(len(s))] + [(s, eos)]
        total_p = total_c = total_a = 0.0
        for prefix, tok in steps:
            row = lp(prefix)
            total_p += float(row[tok])
            allowed_mass = float(row.exp()[mask(prefix)].sum())
            total_c += float(row[tok]) - math.log(allowed_mass)
            if asap is not None:
                if prefix not in aligned_q:
                    aligned_q[prefix] = asap.next_token_probs(prompt, prefix, row, mask(prefix))
                total_a += math.log(float(aligned_q[prefix][tok]))
        log_p.append(total_p)
        log_c.append(total_c)
        log_a.append(total_a)
    lp_t = torch.tensor(log_p, dtype=torch.float64)
    return LanguageDistributions(
        ideal=torch.softmax(lp_t, 0),
        constrained=torch.tensor(log_c, dtype=torch.float64).exp(),
        aligned=torch.tensor(log_a, dtype=torch.float64).exp() if asap is not None else None,
        log_p=lp_t,
    )


def kl_divergence(p: Tensor, q: Tensor) -> float:
    """``KL(p || q)`` in nats (``0 log 0 = 0``; ``inf`` where ``p > 0 = q``)."""
    p = p.to(torch.float64)
    q = q.to(torch.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q differ in shape: {tuple(p.shape)} vs {tuple(q.shape)}")
    pos = p > 0
    if bool((q[pos] <= 0).any()):
        return math.inf
    return float((p[pos] * (p[pos].log() - q[pos].log())).sum())


def empirical(sequences: Sequence[Sequence[int]], language: FiniteLanguage) -> Tensor:
    """``(N,)`` float64 frequencies of ``language.sequences`` among ``sequences`` (EOS stripped).

    Raises ValueError for a sample outside the language (a constraint bug).
    """
    index = {s: i for i, s in enumerate(language.sequences)}
    counts = torch.zeros(len(language), dtype=torch.float64)
    eos = language.eos_token_id
    for seq in sequences:
        s = tuple(seq[:-1]) if seq and seq[-1] == eos else tuple(seq)
        if s not in index:
            raise ValueError(f"sample {list(seq)} is not a sentence of the language")
        counts[index[s]] += 1
    return counts / max(len(sequences), 1)


def enumerate_language(
    constraint: Constraint, eos_token_id: int, *, max_length: int = 64, max_sentences: int = 100_000
) -> FiniteLanguage:
    """Every token sequence a batch-1 ``constraint`` accepts, by depth-first search over its masks.

    Uses only the ``Constraint`` protocol (``mask``, ``fork``, ``advance``), so it turns any
    grammar with a finite language (e.g. a compiled lark grammar) into a :class:`FiniteLanguage`,
    all tokenizations of every string included. Sentences come in depth-first order, children by id.

    Raises:
        ValueError: the language has sentences longer than ``max_length`` tokens (or is
            infinite), or more than ``max_sentences`` sentences.
    """
    sentences: list[Prefix] = []
    vocab_size = -1
    stack: list[tuple[Prefix, Constraint]] = [((), constraint)]
    while stack:
        prefix, c = stack.pop()
        state = State(
            x=torch.zeros(1, len(prefix) + 1, dtype=torch.long),
            t=torch.zeros(1),
            done=torch.zeros(1, dtype=torch.bool),
        )
        m = c.mask(state)
        if m.dim() != 2 or m.shape[0] != 1:
            raise ValueError(
                f"enumerate_language needs a batch-1 constraint, its mask has shape {tuple(m.shape)}"
            )
        vocab_size = m.shape[1]
        ids = torch.nonzero(m[0]).flatten().tolist()
        if eos_token_id in ids:
            sentences.append(prefix)
            if len(sentences) > max_sentences:
                raise ValueError(f"the language has more than {max_sentences} sentences; raise max_sentences")
        nxt = [i for i in ids if i != eos_token_id]
        if nxt and len(prefix) >= max_length:
            raise ValueError(f"the language has sentences longer than {max_length} tokens (or is infinite)")
        for i in reversed(nxt):
            f = c.fork()
            f.advance(torch.tensor([i]))
            stack.append(((*prefix, i), f))
    if vocab_size < 0 or not sentences:
        raise ValueError("the constraint accepts no sentence")
    return FiniteLanguage(sentences, vocab_size=vocab_size, eos_token_id=eos_token_id)
