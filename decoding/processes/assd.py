"""Any-subset speculative decoding (ASSD; Guo & Ermon, arXiv 2504.20456), one model call per step.

An any-subset model answers, in one forward pass, (b) the exact chain
``p_j = p(x_sigma(t+j) | committed, d_<j)`` over a block of drafted tokens ``d_0..d_{m-1}`` placed at the
next order slots, and (a) draft marginals for the following slots given the committed tokens *and the whole
block*. Each loop step (one call) then:

1. verifies the block left to right (speculative sampling, Leviathan et al. arXiv 2211.17192): draft
   ``d_j`` (drawn from proposal ``q_j``) is accepted with probability ``min(1, p_j(d_j) / q_j(d_j))``; at the
   first rejection the token is resampled from the normalised residual ``max(p_j - q_j, 0)`` and the rest of
   the block is dropped;
2. if the whole block was accepted, the first draft row conditions on exactly the committed tokens, so a
   sample from it is an exact draw: it is committed at once (the "free" token);
3. draws the next block (fresh samples) from the rows of this call: draft rows for slots after the old block,
   chain rows for the dropped slots of a rejected block. Any proposal keeps the output exact, because each
   draft is verified against the exact chain of the next call.

Every call commits at least one token (the free token or the resampled one), so NFE <= number of generated
tokens on every run, and the samples follow the model's joint exactly (tested on a known joint). The
reference implementation spends two calls per round (draft, then verify); fusing the verification of one
block with the drafting of the next halves that. ``k = 1`` is sequential any-order sampling.

Draft length: ``k`` is the most tokens one call can commit (a block of ``k - 1`` drafts plus one). With
``adaptive=True`` each row keeps its own ``k``: ``+2`` after a call that accepted its whole (non-empty)
block, ``-1`` after a rejection, clamped to ``[2, k_max]`` (the rule of transformers' assisted generation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.nn.any_subset import AnySubsetQuery
from decoding.processes.any_order import ORDERS, AnyOrder, build_query, check_prediction


def _probs(logits: Tensor) -> Tensor:
    """Softmax in at least float32 (float64 logits stay float64)."""
    return torch.softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)


def _sample(p: Tensor, generator: torch.Generator) -> Tensor:
    """One index per row of unnormalised probabilities ``p`` ``(..., V)`` (exponential race, as
    :func:`decoding.core.sampling.sample_categorical`, without the log / softmax round trip)."""
    race = torch.empty_like(p).exponential_(1.0, generator=generator)
    return (p / race).argmax(dim=-1)


@dataclass(frozen=True)
class ASSD(AnyOrder):
    """Any-subset speculative decoding for infilling (same prompt formats as :class:`AnyOrder`).

    Args:
        mask_token_id: id marking targets in a tensor prompt (or pass ``prompt['targets']``).
        order: ``"left_to_right"`` over the targets or ``"random"``; ``prompt['order']`` overrides.
        k: most tokens committed per model call (``>= 1``; ``1`` is sequential sampling).
        adaptive: adapt ``k`` per row (see the module docstring) between 2 and ``k_max``.
        k_max: upper bound for adaptive ``k`` (default ``2 * k``).
    """

    k: int = 4
    adaptive: bool = False
    k_max: int | None = None

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"unknown order {self.order!r}; choose one of {', '.join(ORDERS)}")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k (tokens per model call) must be an integer >= 1, got {self.k!r}")
        if self.k_max is not None and (not isinstance(self.k_max, int) or self.k_max < max(self.k, 2)):
            raise ValueError(f"k_max must be an integer >= max(k, 2) = {max(self.k, 2)}, got {self.k_max!r}")

    @property
    def capacity(self) -> int:
        """Most tokens a call can commit: ``k``, or ``k_max`` when adaptive."""
        if not self.adaptive:
            return self.k
        return self.k_max if self.k_max is not None else max(2 * self.k, 2)

    def init(self, prompt: Tensor | Mapping[str, Any], generator: torch.Generator) -> State:
        """The infill state with an empty block; see :func:`~decoding.processes.any_order.parse_infill_prompt`."""
        state = self._start(prompt, generator)
        b, dev = state.batch_size, state.x.device
        cap = self.capacity
        k0 = self.k if not self.adaptive else min(max(self.k, 2), cap)
        mem = {
            **state.memory,
            "block": torch.zeros(b, cap - 1, dtype=torch.long, device=dev),
            "block_len": torch.zeros(b, dtype=torch.long, device=dev),
            "block_probs": None,
            "k": torch.full((b,), k0, dtype=torch.long, device=dev),
        }
        return replace(state, memory={**mem, "any_subset_query": self._block_query(state.x, mem, state.t)})

    def _block_query(self, x: Tensor, mem: Mapping[str, Any], t: Tensor) -> AnySubsetQuery:
        cap = self.capacity
        return build_query(x, mem["rank"], mem["order"], t, mem["n_targets"], mem["block"], mem["block_len"], cap - 1, cap)

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """Verify the block, commit, and draw the next block (module docstring, steps 1-3)."""
        mem = state.memory
        logits = check_prediction(pred, mem["any_subset_query"])
        probs = _probs(logits)
        b, dev = state.batch_size, state.x.device
        cap = self.capacity
        nc = cap - 1
        live = ~state.done
        t, m, kk = state.t, mem["block_len"], mem["k"]
        order, n_targets = mem["order"], mem["n_targets"]
        width = order.shape[1]
        chain = probs[:, :nc]
        rows = torch.arange(b, device=dev)

        # 1. verify the block: accept d_j with probability min(1, p_j(d_j) / q_j(d_j))
        if nc:
            block, qprobs = mem["block"], mem["block_probs"]
            if qprobs is None:
                qprobs = torch.ones_like(chain) / chain.shape[-1]
            j = torch.arange(nc, device=dev)
            p_d = chain.gather(2, block[..., None]).squeeze(-1)
            q_d = qprobs.gather(2, block[..., None]).squeeze(-1)
            u = torch.rand(b, nc, generator=generator, device=dev, dtype=probs.dtype)
            ok = (u * q_d < p_d) & (j < m[:, None])
            a = ok.long().cumprod(1).sum(1)
            rejected = (a < m) & live
            ai = a.clamp(max=nc - 1)
            p_a, q_a = chain[rows, ai], qprobs[rows, ai]
            resid = (p_a - q_a).clamp(min=0)
            resid = torch.where(resid.sum(-1, keepdim=True) > 0, resid, p_a)
            res_tok = _sample(resid, generator)
        else:
            block = torch.zeros(b, 0, dtype=torch.long, device=dev)
            a = torch.zeros(b, dtype=torch.long, device=dev)
            rejected = torch.zeros(b, dtype=torch.bool, device=dev)
            res_tok = torch.zeros(b, dtype=torch.long, device=dev)

        # 3. (drawn before committing) fresh samples from the bank of this call's rows for slots
        #    s0, s0+1, ... (relative to t): chain rows for dropped block slots, then draft rows.
        n_drafts = (n_targets - t - m).clamp(min=0, max=cap)  # valid draft rows
        s0 = torch.where(rejected, a + 1, m)
        s = s0[:, None] + torch.arange(cap, device=dev)
        avail = s < (m + n_drafts)[:, None]
        bank_idx = torch.where(s < m[:, None], s, nc + s - m[:, None]).clamp(max=nc + cap - 1)
        bank = probs[rows[:, None], bank_idx]  # (B, cap, V)
        draws = _sample(bank, generator)  # (B, cap)

        # 2. commit: accepted drafts, then the residual token (rejected) or the free exact token
        free = ~rejected & avail[:, 0] & live
        extra = torch.where(rejected, res_tok, draws[:, 0])
        commit = torch.cat([block, torch.zeros(b, 1, dtype=torch.long, device=dev)], 1)
        commit = commit.scatter(1, a[:, None], extra[:, None])
        n_commit = torch.where(live, a + (rejected | free).long(), 0)
        jj = torch.arange(nc + 1, device=dev)
        cvalid = jj < n_commit[:, None]
        slot = (t[:, None] + jj).clamp(max=width - 1)
        pos = torch.where(cvalid, order.gather(1, slot), state.x.shape[1])
        x = torch.cat([state.x, state.x.new_zeros(b, 1)], 1).scatter(1, pos, commit)[:, :-1]
        rank = torch.cat([mem["rank"], mem["rank"].new_zeros(b, 1)], 1)
        rank = rank.scatter(1, pos, t[:, None] + 1 + jj)[:, :-1]
        t_new = t + n_commit

        # adaptive draft length
        if self.adaptive:
            full = live & ~rejected & (m > 0)
            kk = torch.where(full, kk + 2, torch.where(rejected, kk - 1, kk)).clamp(2, cap)
        start = (~rejected).long()  # the free token used draws[:, 0]
        n_avail = avail.long().sum(1) - start
        new_len = torch.minimum(kk - 1, n_avail.clamp(min=0))
        new_len = torch.where(live & (t_new < n_targets), new_len, 0)
        take = (start[:, None] + torch.arange(nc, device=dev)).clamp(max=cap - 1)
        new_block = draws.gather(1, take)
        new_probs = bank[rows[:, None], take]

        memory = {**mem, "rank": rank, "block": new_block, "block_len": new_len, "block_probs": new_probs, "k": kk}
        memory["any_subset_query"] = self._block_query(x, memory, t_new)
        # per-row statistics: drafts verified and drafts accepted so far
        memory["drafted"] = mem.get("drafted", 0) + torch.where(live, m, 0)
        memory["accepted"] = mem.get("accepted", 0) + torch.where(live, a, 0)
        return replace(state, x=x, t=t_new, done=t_new >= n_targets, step=state.step + 1, memory=memory)
