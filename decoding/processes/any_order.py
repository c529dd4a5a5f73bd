"""Sequential any-order sampling from an any-subset autoregressive model (one token per model call).

Infilling: the prompt fixes some positions (visible, rank 0); the others (the *targets*) are sampled
one at a time along an order ``sigma`` (left to right over the targets, uniformly random, or given):
``x_sigma(j) ~ p(. | visible, x_sigma(<j))``. With the exact conditionals of a joint this samples the
joint conditioned on the visible tokens (the any-order chain rule; Uria et al. arXiv 1310.1757,
Shih et al. arXiv 2205.13554). :class:`~decoding.processes.assd.ASSD` samples the same distribution
with fewer model calls.

The model is any :class:`~decoding.nn.any_subset.AnySubsetModel`: the process leaves its question in
``state.memory["any_subset_query"]`` and reads logits ``(B, Q, V)``, one row per query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from decoding.core.sampling import sample_categorical
from decoding.core.types import Prediction, State
from decoding.nn.any_subset import HIDDEN, AnySubsetModel, AnySubsetQuery

ORDERS = ("left_to_right", "random")


def parse_infill_prompt(
    prompt: Tensor | Mapping[str, Any], mask_token_id: int | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(input_ids (B, L), targets (B, L) bool, order (B, T) or None)`` from an infill prompt.

    ``prompt`` is a ``(B, L)`` long tensor whose ``mask_token_id`` entries are the targets, or a mapping
    with ``input_ids``, optional ``targets`` (bool, default ``input_ids == mask_token_id``) and optional
    ``order`` (``(B, T)`` positions, ``-1`` padding).
    """
    order = None
    if isinstance(prompt, Mapping):
        if "input_ids" not in prompt:
            raise ValueError("an infill prompt mapping needs 'input_ids' (and 'targets' or a mask_token_id)")
        ids, targets, order = prompt["input_ids"], prompt.get("targets"), prompt.get("order")
    else:
        ids, targets = prompt, None
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
        shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"infill input_ids must be a (batch, length) long tensor, got {shape}")
    if targets is None:
        if mask_token_id is None:
            raise ValueError("give prompt['targets'] (bool, True = to sample) or set the process's mask_token_id")
        targets = ids == mask_token_id
    targets = torch.as_tensor(targets, device=ids.device)
    if targets.dtype != torch.bool or targets.shape != ids.shape:
        raise ValueError(f"targets must be a bool tensor of shape {tuple(ids.shape)}, got {targets.dtype} {tuple(targets.shape)}")
    if order is not None:
        order = torch.as_tensor(order, device=ids.device)
        if order.dim() != 2 or order.shape[0] != ids.shape[0] or order.dtype != torch.long:
            raise ValueError(f"order must be a (batch, T) long tensor of positions, got {order.dtype} {tuple(order.shape)}")
    return ids, targets, order


def make_order(targets: Tensor, kind: str, generator: torch.Generator | None) -> Tensor:
    """``(B, T)`` target positions in decoding order (``-1`` padding), ``T = max targets`` (at least 1)."""
    b, n = targets.shape
    if kind == "left_to_right":
        key = torch.arange(n, device=targets.device, dtype=torch.float64).expand(b, n)
    elif kind == "random":
        key = torch.rand(b, n, generator=generator, device=targets.device, dtype=torch.float64)
    else:
        raise ValueError(f"unknown order {kind!r}; choose one of {', '.join(ORDERS)} or pass prompt['order']")
    key = torch.where(targets, key, float("inf"))
    order = torch.argsort(key, dim=1, stable=True)
    count = targets.sum(1, keepdim=True)
    width = max(int(count.max()) if b else 0, 1)
    order = order[:, :width]
    return torch.where(torch.arange(width, device=targets.device) < count, order, -1)


def check_order(order: Tensor, targets: Tensor) -> Tensor:
    """Validate a user order: each row lists every target position exactly once, then ``-1`` padding."""
    b, n = targets.shape
    width = max(int(targets.sum(1).max()) if b else 0, 1)
    for r in range(b):
        row = order[r].tolist()
        want = sorted(torch.nonzero(targets[r]).flatten().tolist())
        got = [p for p in row if p >= 0]
        padded_ok = all(p < 0 for p in row[len(got) :])
        if not padded_ok or sorted(got) != want:
            raise ValueError(
                f"order row {r} is not a permutation of that row's masked positions: got {got}, "
                f"masked positions are {want} (list each exactly once, then pad with -1)"
            )
    out = torch.full((b, width), -1, dtype=torch.long, device=order.device)
    w = min(width, order.shape[1])
    out[:, :w] = order[:, :w]
    return out


def build_query(
    x: Tensor,
    rank: Tensor,
    order: Tensor,
    t: Tensor,
    n_targets: Tensor,
    block: Tensor,
    block_len: Tensor,
    n_chain: int,
    n_draft: int,
) -> AnySubsetQuery:
    """The query of one call: ``n_chain`` chain rows over the block, then ``n_draft`` draft rows.

    Args:
        x: ``(B, L)`` committed tokens; rank ``(B, L)`` (0 visible, ``i`` for the ``i``-th committed, HIDDEN).
        order: ``(B, T)`` target order; ``t`` ``(B,)`` targets committed so far; ``n_targets`` ``(B,)``.
        block: ``(B, n_chain)`` drafts for order slots ``t .. t + block_len - 1``; ``block_len`` ``(B,)``.

    Chain row ``j`` asks ``p(x_order[t+j] | committed, block[<j])``; draft row ``i`` asks
    ``p(x_order[t+block_len+i] | committed, whole block)``. Unused rows ask ``(0, 1)``.
    """
    b, width = order.shape
    dev = x.device
    tokens, rank = x.clone(), rank.clone()
    if n_chain:
        j = torch.arange(n_chain, device=dev)
        in_block = j < block_len[:, None]
        slot = (t[:, None] + j).clamp(max=width - 1)
        pos = order.gather(1, slot).clamp(min=0)
        # padding slots write into a spare column that is dropped
        spare = torch.where(in_block, pos, x.shape[1])
        tokens = torch.cat([tokens, tokens.new_zeros(b, 1)], 1).scatter(1, spare, block)[:, :-1]
        rank = torch.cat([rank, rank.new_zeros(b, 1)], 1).scatter(1, spare, t[:, None] + 1 + j)[:, :-1]
        chain_pos = torch.where(in_block, pos, 0)
        chain_rank = torch.where(in_block, t[:, None] + 1 + j, 1)
    i = torch.arange(n_draft, device=dev)
    dslot = t[:, None] + block_len[:, None] + i
    dvalid = dslot < n_targets[:, None]
    dpos = torch.where(dvalid, order.gather(1, dslot.clamp(max=width - 1)).clamp(min=0), 0)
    drank = torch.where(dvalid, (t + block_len + 1)[:, None].expand(b, n_draft), 1)
    if n_chain:
        dpos, drank = torch.cat([chain_pos, dpos], 1), torch.cat([chain_rank, drank], 1)
    return AnySubsetQuery(tokens, rank, dpos, drank)


def check_prediction(pred: Prediction, query: AnySubsetQuery) -> Tensor:
    """The ``(B, Q, V)`` logits of an any-subset model's answer, or a clear error."""
    logits = pred.logits
    b, q = query.query_pos.shape
    if logits is None or not pred.extras.get("any_subset") or logits.dim() != 3 or tuple(logits.shape[:2]) != (b, q):
        shape = None if logits is None else tuple(logits.shape)
        raise ValueError(
            f"this process needs an any-subset model (decoding.nn.any_subset.AnySubsetModel, e.g. AnySubsetLM) "
            f"answering {q} queries per row with logits (B, Q, V); the model returned logits {shape}"
        )
    return logits


def require_any_subset(model: Any) -> None:
    """Raise ``ValueError`` unless ``model`` implements the any-subset interface."""
    if not isinstance(model, AnySubsetModel):
        raise ValueError(
            f"{type(model).__name__} is not an any-subset model: ASSD and any-order sampling need a model "
            "deriving from decoding.nn.any_subset.AnySubsetModel (e.g. AnySubsetLM.from_pretrained(folder))"
        )


@dataclass(frozen=True)
class AnyOrder:
    """Sequential any-order infilling: one target per model call.

    Args:
        mask_token_id: id marking targets in a tensor prompt (or pass ``prompt['targets']``).
        order: ``"left_to_right"`` over the targets or ``"random"`` (per row, from the generator);
            ``prompt['order']`` overrides it.
    """

    mask_token_id: int | None = None
    order: str = "left_to_right"

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"unknown order {self.order!r}; choose one of {', '.join(ORDERS)}")

    # --- shared with ASSD -------------------------------------------------------------------
    def _start(self, prompt: Tensor | Mapping[str, Any], generator: torch.Generator) -> State:
        ids, targets, order = parse_infill_prompt(prompt, self.mask_token_id)
        order = make_order(targets, self.order, generator) if order is None else check_order(order, targets)
        n_targets = targets.sum(1)
        fill = 0 if self.mask_token_id is None else self.mask_token_id
        x = torch.where(targets, fill, ids)
        rank = torch.where(targets, HIDDEN, 0).to(torch.long)
        b = ids.shape[0]
        t = torch.zeros(b, dtype=torch.long, device=ids.device)
        return State(
            x=x,
            t=t,
            done=n_targets == 0,
            emitted=None,
            memory={"order": order, "n_targets": n_targets, "rank": rank, "targets": targets},
        )

    def schedule(self, steps: int) -> Tensor:
        """``0, 1, ..., steps``: model calls so far (a call commits at least one target)."""
        return torch.arange(steps + 1)

    # --- sequential sampling ----------------------------------------------------------------
    def init(self, prompt: Tensor | Mapping[str, Any], generator: torch.Generator) -> State:
        """The infill state; see :func:`parse_infill_prompt` for ``prompt``."""
        state = self._start(prompt, generator)
        return state.remember(any_subset_query=self._query(state.x, state.memory, state.t))

    def _query(self, x: Tensor, mem: Mapping[str, Any], t: Tensor) -> AnySubsetQuery:
        empty = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return build_query(x, mem["rank"], mem["order"], t, mem["n_targets"], empty[:, None][:, :0], empty, 0, 1)

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """Sample ``x_order[t]`` from the single query row and commit it."""
        mem = state.memory
        logits = check_prediction(pred, mem["any_subset_query"])
        token = sample_categorical(logits[:, 0], generator)
        live = ~state.done
        slot = state.t.clamp(max=mem["order"].shape[1] - 1)[:, None]
        pos = mem["order"].gather(1, slot)
        spare = torch.where(live[:, None], pos, state.x.shape[1])
        x = torch.cat([state.x, state.x.new_zeros(state.batch_size, 1)], 1).scatter(1, spare, token[:, None])[:, :-1]
        rank = torch.cat([mem["rank"], mem["rank"].new_zeros(state.batch_size, 1)], 1)
        rank = rank.scatter(1, spare, (state.t + 1)[:, None])[:, :-1]
        t = state.t + live.long()
        memory = {**mem, "rank": rank}
        memory["any_subset_query"] = self._query(x, memory, t)
        return replace(state, x=x, t=t, done=t >= mem["n_targets"], step=state.step + 1, memory=memory)


def infill_steps(prompt: Tensor | Mapping[str, Any], mask_token_id: int | None = None) -> int:
    """The step budget that completes an infill: its largest number of targets in a row (every
    model call commits at least one target). Pass it as ``decode(..., steps=infill_steps(prompt))``."""
    ids, targets, _ = parse_infill_prompt(prompt, mask_token_id)
    return max(int(targets.sum(1).max()) if ids.shape[0] else 0, 1)
