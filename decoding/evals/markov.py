"""A closed-form language model: a first-order Markov chain over a tiny alphabet.

Its distribution over whole sequences is known exactly, so evals can measure the KL divergence
between what a decoder samples and what it should sample (the chain with the decoder's
processors applied to every row, or the chain conditioned on a grammar).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from decoding.core.types import Prediction, State

Outcome = tuple[int, ...]


class MarkovLM:
    """Next-token logits ``log P[x_last]`` for a row-stochastic transition matrix ``P`` ``(V, V)``.

    Args:
        transition: ``(V, V)`` probabilities; row ``i`` is the next-token distribution after ``i``.
        alphabet: ``V`` strings, the text of each token (the EOS token's text is never printed).
        eos_token_id: the token that ends a sequence (``None``: sequences end at the length limit).
    """

    def __init__(self, transition: Tensor, alphabet: Sequence[str], eos_token_id: int | None = None) -> None:
        p = torch.as_tensor(transition, dtype=torch.float64)
        if p.dim() != 2 or p.shape[0] != p.shape[1]:
            raise ValueError(f"transition must be a square (V, V) matrix, got shape {tuple(p.shape)}")
        if (p < 0).any() or not torch.allclose(
            p.sum(1), torch.ones(p.shape[0], dtype=torch.float64), atol=1e-9
        ):
            raise ValueError("transition rows must be probability vectors (non-negative, summing to 1)")
        if len(alphabet) != p.shape[0]:
            raise ValueError(f"alphabet has {len(alphabet)} symbols for a {p.shape[0]}-token chain")
        if eos_token_id is not None and not 0 <= eos_token_id < p.shape[0]:
            raise ValueError(f"eos_token_id {eos_token_id} is outside the vocabulary [0, {p.shape[0]})")
        self.transition = p
        self.logp = p.log()
        self.alphabet = list(alphabet)
        self.eos_token_id = eos_token_id

    @property
    def vocab_size(self) -> int:
        return int(self.transition.shape[0])

    def __call__(self, state: State) -> Prediction:
        """``state.x`` ``(B, L)`` -> ``Prediction(logits (B, V))`` from the last token of each row."""
        return Prediction(logits=self.logp.to(state.x.device)[state.x[:, -1]].float())

    def text(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` (EOS left out)."""
        return "".join(self.alphabet[t] for t in tokens if t != self.eos_token_id)

    def logprob(self, start: int, tokens: Sequence[int]) -> list[float]:
        """``log P(token_i | token_{i-1})`` for each token after ``start``."""
        out, prev = [], start
        for t in tokens:
            out.append(float(self.logp[prev, t]))
            prev = t
        return out

    def sequence_distribution(
        self,
        start: int,
        max_len: int,
        row_logits: Callable[[Tensor], Tensor] | None = None,
        limit: int = 1_000_000,
    ) -> dict[Outcome, float]:
        """The exact probability of every sequence the chain can emit after ``start``.

        A sequence ends at EOS (kept as its last token) or after ``max_len`` tokens.

        Args:
            row_logits: maps the ``(V, V)`` log-transition rows to the logits actually sampled
                from (e.g. a processor chain); default: unchanged.
            limit: refuse (ValueError) when more than this many sequences would be enumerated.
        """
        logits = self.logp if row_logits is None else row_logits(self.logp.clone())
        probs = torch.softmax(logits.double(), dim=-1)
        out: dict[Outcome, float] = {}
        frontier: list[tuple[Outcome, int, float]] = [((), start, 1.0)]
        for depth in range(max_len):
            nxt: list[tuple[Outcome, int, float]] = []
            for seq, last, p in frontier:
                row = probs[last]
                for t in torch.nonzero(row > 0).flatten().tolist():
                    q = p * float(row[t])
                    s = (*seq, t)
                    if t == self.eos_token_id or depth == max_len - 1:
                        out[s] = out.get(s, 0.0) + q
                    else:
                        nxt.append((s, t, q))
                if len(out) + len(nxt) > limit:
                    raise ValueError(
                        f"the exact distribution has more than {limit} sequences; "
                        "use a smaller vocabulary or fewer max_new_tokens"
                    )
            frontier = nxt
        return out


def joint_table(chain: MarkovLM, start: int, length: int, limit: int = 1_000_000) -> Tensor:
    """``(V,) * length`` float64 table of ``P(x_1..x_L | x_0 = start)`` (EOS treated as a plain token)."""
    v = chain.vocab_size
    if v**length > limit:
        raise ValueError(
            f"a joint over {v}^{length} sequences is too large (limit {limit}); shorten the length"
        )
    table = chain.transition[start].clone()
    for _ in range(length - 1):
        table = table[..., None] * chain.transition  # new[..., i, j] = table[..., i] * P[i, j]
    return table


def random_chain(vocab: int, seed: int, concentration: float = 1.0) -> Tensor:
    """A ``(vocab, vocab)`` transition matrix with Dirichlet(``concentration``) rows, from ``seed``."""
    if vocab < 2:
        raise ValueError(f"a Markov chain needs vocab >= 2, got {vocab}")
    if not concentration > 0:
        raise ValueError(f"concentration must be > 0, got {concentration}")
    g = torch.Generator().manual_seed(int(seed))
    gamma = torch._standard_gamma(
        torch.full((vocab, vocab), float(concentration), dtype=torch.float64), generator=g
    )
    gamma = gamma.clamp_min(1e-12)
    return gamma / gamma.sum(1, keepdim=True)
