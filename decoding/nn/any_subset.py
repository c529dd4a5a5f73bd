"""Any-subset autoregressive transformer (AS-ARM) with XLNet-style two-stream attention.

An AS-ARM (Shih et al., arXiv 2205.13554; Guo & Ermon, arXiv 2504.20456) gives conditionals
``p(x_i | x_S)`` for any target ``i`` and any revealed set ``S``, and — in the same forward pass —
the exact chain ``p(x_sigma(j) | x_sigma(<j), visible)`` along an order ``sigma`` of targets whose
(drafted) contents are part of the input. Two streams (XLNet, arXiv 1906.08237) make this work:

- the **content stream** carries each revealed token; a token of *rank* ``r`` attends to every
  content of rank ``<= r`` (the visible prompt has rank 0 and sees the whole prompt);
- the **query stream** holds one row per question "what is at position ``p`` given everything of
  rank ``< s``?"; it knows the position but never the content there.

Both streams are rows of one sequence run through the shared :class:`~decoding.nn.transformer.Transformer`
(same weights) with a bool mask built from the ranks, so all attention goes through
:func:`decoding.nn.attention.attention` (xformers on CUDA). A learned *sink* row (rank 0) is always
visible so that no row is empty (a fully masked sequence has no prompt). Content positions that are not
revealed (rank :data:`HIDDEN`) are dropped before the network runs: nothing may see them.

Rank semantics (the whole interface), for one row of a batch:

- ``rank[i] == 0``: visible prompt; ``rank[i] == r >= 1``: the ``r``-th revealed token (committed or
  drafted); ``rank[i] == HIDDEN``: unknown (its token id is ignored).
- a query ``(pos, s)`` with ``s >= 1`` sees exactly the contents of rank ``< s``.

So ``p(x_i | visible)`` is the query ``(i, 1)``, and with drafts ``d_0..d_{m-1}`` placed at the order's
positions with ranks ``1..m``, the chain conditionals are the queries ``(sigma(j), j + 1)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from decoding.core.types import Prediction, State
from decoding.data.weights import load_tensors, save_model_folder
from decoding.nn.transformer import Transformer, TransformerConfig

HIDDEN = 1 << 30
"""Rank of a position whose content is unknown (never attended to)."""


@dataclass(frozen=True)
class AnySubsetQuery:
    """One batched any-subset question.

    Attributes:
        tokens: ``(B, L)`` long content ids (ignored where ``rank == HIDDEN``).
        rank: ``(B, L)`` long, see the module docstring.
        query_pos: ``(B, Q)`` long positions to predict.
        query_rank: ``(B, Q)`` long ``>= 1``; a query sees the contents of rank ``< query_rank``.
    """

    tokens: Tensor
    rank: Tensor
    query_pos: Tensor
    query_rank: Tensor

    def validate(self, vocab_size: int | None = None) -> None:
        """Raise ``ValueError`` naming the first malformed field."""
        if self.tokens.dim() != 2 or self.tokens.shape != self.rank.shape:
            raise ValueError(f"tokens {tuple(self.tokens.shape)} and rank {tuple(self.rank.shape)} must both be (B, L)")
        if self.query_pos.dim() != 2 or self.query_pos.shape != self.query_rank.shape:
            raise ValueError(f"query_pos {tuple(self.query_pos.shape)} and query_rank {tuple(self.query_rank.shape)} must both be (B, Q)")
        if self.query_pos.shape[0] != self.tokens.shape[0]:
            raise ValueError("tokens and queries must have the same batch size")
        if self.query_pos.numel() and (int(self.query_pos.min()) < 0 or int(self.query_pos.max()) >= self.tokens.shape[1]):
            raise ValueError(f"query positions must lie in [0, {self.tokens.shape[1]})")
        if self.query_rank.numel() and int(self.query_rank.min()) < 1:
            raise ValueError("query ranks must be >= 1 (rank 0 is the visible prompt)")
        if int(self.rank.min()) < 0:
            raise ValueError("content ranks must be >= 0")
        if vocab_size is not None:
            known = self.tokens[self.rank < HIDDEN]
            if known.numel() and (int(known.min()) < 0 or int(known.max()) >= vocab_size):
                raise ValueError(f"revealed token ids must lie in [0, {vocab_size})")


def chain_query(
    tokens: Tensor,
    visible: Tensor,
    order: Tensor,
    marginal_pos: Tensor | None = None,
    marginals_see_chain: bool = False,
) -> AnySubsetQuery:
    """Queries for (b) the chain along ``order`` and (a) marginals at ``marginal_pos``, in one pass.

    Args:
        tokens: ``(B, L)`` ids; the contents at ``order``'s positions are the chain's tokens.
        visible: ``(B, L)`` bool, the conditioning set (rank 0).
        order: ``(B, T)`` long positions in decoding order, ``-1`` padding at the end of a row.
        marginal_pos: ``(B, M)`` long positions (``-1`` padding) for marginal queries.
        marginals_see_chain: marginals condition on visible only (False) or on visible and the
            whole chain (True, what a speculative draft for the next block needs).

    Returns:
        an :class:`AnySubsetQuery` whose first ``T`` rows are the chain
        ``p(x_order[j] | visible, x_order[<j])`` and whose last ``M`` rows are the marginals.
    """
    b, n = tokens.shape
    valid = order >= 0
    rank = torch.where(visible, 0, HIDDEN).to(torch.long)
    steps = torch.arange(1, order.shape[1] + 1, device=tokens.device).expand(b, -1)
    # padding entries scatter into a spare column n that is dropped afterwards
    rank = torch.cat([rank, rank.new_zeros(b, 1)], 1).scatter(1, torch.where(valid, order, n), steps)[:, :n]
    qpos = [order.clamp(min=0)]
    qrank = [torch.where(valid, steps, 1)]
    if marginal_pos is not None:
        mvalid = marginal_pos >= 0
        after = (valid.sum(1, keepdim=True) + 1) if marginals_see_chain else torch.ones(b, 1, dtype=torch.long, device=tokens.device)
        qpos.append(marginal_pos.clamp(min=0))
        qrank.append(torch.where(mvalid, after.expand_as(marginal_pos), 1))
    return AnySubsetQuery(tokens, rank, torch.cat(qpos, 1), torch.cat(qrank, 1))


class AnySubsetTransformer(nn.Module):
    """The AS-ARM network: :class:`Transformer` (bidirectional) plus a sink and a query-stream id.

    ``forward(query) -> logits (B, Q, V)`` answers every query of an :class:`AnySubsetQuery` in one pass.
    The inner transformer's vocabulary is ``V + 2``: id ``V`` is the sink, ``V + 1`` the query stream's
    input; neither is ever predicted. Positions are shifted by one (the sink sits at position 0).
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if cfg.causal:
            raise ValueError("an any-subset transformer is bidirectional: use TransformerConfig(causal=False)")
        self.vocab_size = cfg.vocab_size
        inner = TransformerConfig(**{**cfg.to_dict(), "vocab_size": cfg.vocab_size + 2, "max_len": cfg.max_len + 1})
        self.cfg = cfg
        self.net = Transformer(inner)

    @property
    def max_len(self) -> int:
        return self.cfg.max_len

    def forward(self, query: AnySubsetQuery, backend: str | None = None) -> Tensor:
        """Logits ``(B, Q, V)`` (float32) of every query; see the module docstring for the semantics."""
        tokens, rank, qpos, qrank = query.tokens, query.rank, query.query_pos, query.query_rank
        b, n = tokens.shape
        if n > self.cfg.max_len:
            raise ValueError(f"sequence length {n} exceeds the model's max_len {self.cfg.max_len}")
        dev = tokens.device
        # Keep only revealed contents (hidden ones are invisible to every row), packed to the left.
        keep = rank < HIDDEN
        nk = int(keep.sum(1).max()) if n else 0
        idx = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :nk]
        kept = keep.gather(1, idx)
        c_tok = torch.where(kept, tokens.gather(1, idx), 0)
        c_rank = torch.where(kept, rank.gather(1, idx), HIDDEN)
        v = self.vocab_size
        sink = torch.full((b, 1), v, dtype=torch.long, device=dev)
        qtok = torch.full_like(qpos, v + 1)
        seq = torch.cat([sink, c_tok, qtok], 1)
        zero = torch.zeros(b, 1, dtype=torch.long, device=dev)
        positions = torch.cat([zero, idx + 1, qpos + 1], 1)
        key_rank = torch.cat([zero, c_rank, torch.full_like(qpos, HIDDEN + 1)], 1)  # query rows are never keys
        row_limit = torch.cat([zero, c_rank, qrank - 1], 1)  # a row sees keys of rank <= its limit
        mask = (key_rank[:, None, :] <= row_limit[:, :, None])[:, None]
        hidden, _ = self.net(seq, positions=positions, mask=mask, backend=backend, return_hidden=True)
        g = hidden[:, 1 + nk :]
        w = self.net.embed.weight if self.net.head is None else self.net.head.weight
        return (g @ w[:v].t()).float()


class AnySubsetModel:
    """Marker base for engine models that answer :class:`AnySubsetQuery` (see :class:`AnySubsetLM`).

    Subclasses implement ``any_subset_logits(query) -> (B, Q, V)``; :meth:`__call__` reads the query the
    any-order processes leave in ``state.memory["any_subset_query"]``.
    """

    vocab_size: int

    def any_subset_logits(self, query: AnySubsetQuery) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, state: State) -> Prediction:
        query = state.memory.get("any_subset_query")
        if query is None:
            raise ValueError(
                f"{type(self).__name__} answers any-subset queries: decode it with "
                "decoding.processes.any_order.AnyOrder or decoding.processes.assd.ASSD"
            )
        live = ~state.done
        if bool(live.all()):
            logits = self.any_subset_logits(query)
        else:  # run finished rows not at all
            rows = torch.nonzero(live).flatten()
            sub = AnySubsetQuery(*(t.index_select(0, rows) for t in (query.tokens, query.rank, query.query_pos, query.query_rank)))
            out = self.any_subset_logits(sub) if rows.numel() else None
            shape = (query.tokens.shape[0], query.query_pos.shape[1], self.vocab_size)
            logits = torch.zeros(shape, dtype=torch.float32 if out is None else out.dtype, device=query.tokens.device)
            if out is not None:
                logits[rows] = out
        return Prediction(logits=logits, extras={"any_subset": True})


class AnySubsetLM(AnySubsetModel):
    """Engine model around an :class:`AnySubsetTransformer`.

    Args:
        net: the network (evaluation mode is set).
        banned_tokens: ids never predicted (e.g. the tokenizer's pad / mask ids): their logits are -inf.
        backend: attention backend override.
    """

    def __init__(self, net: AnySubsetTransformer, banned_tokens: Sequence[int] = (), backend: str | None = None) -> None:
        self.net = net.eval()
        self.vocab_size = net.vocab_size
        self.banned = sorted({int(t) for t in banned_tokens})
        if any(t < 0 or t >= self.vocab_size for t in self.banned):
            raise ValueError(f"banned token ids must lie in [0, {self.vocab_size})")
        self.backend = backend

    @property
    def device(self) -> torch.device:
        return self.net.net.embed.weight.device

    @torch.inference_mode()
    def any_subset_logits(self, query: AnySubsetQuery) -> Tensor:
        logits = self.net(query, backend=self.backend)
        if self.banned:
            logits[..., self.banned] = float("-inf")
        return logits

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu", backend: str | None = None) -> AnySubsetLM:
        """Load ``config.json`` + ``model.safetensors`` written by :mod:`decoding.train.as_arm`."""
        net, cfg = load_any_subset(path, device)
        return cls(net, banned_tokens=cfg.get("banned_tokens", ()), backend=backend)


def config_dict(net: AnySubsetTransformer) -> dict[str, Any]:
    """The ``config.json`` fields that rebuild ``net``."""
    sizes = net.cfg.to_dict()
    sizes.pop("vocab_size")
    sizes.pop("causal")
    return {"kind": "any-subset", "defaults": {"speculative": 4, "order": "left_to_right"},
            "model_type": "as-arm", "vocab_size": net.vocab_size, "transformer": sizes}


def save_any_subset(
    net: AnySubsetTransformer, folder: str | Path, extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (weights in ``dtype``, default their own) into ``folder``."""
    cfg = {**config_dict(net), **(extra or {})}
    return save_model_folder(folder, net.state_dict(), cfg, dtype, metadata={"format": "pt", "model_type": "as-arm"})


def load_any_subset(path: str | Path, device: str | torch.device = "cpu") -> tuple[AnySubsetTransformer, dict]:
    """``(network in float32, eval mode; config dict)`` from a folder written by :func:`save_any_subset`."""
    folder = Path(path)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} is not an AS-ARM model folder (needs config.json and model.safetensors)")
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") != "as-arm":
        raise ValueError(f"{folder}/config.json has model_type {cfg.get('model_type')!r}, expected 'as-arm'")
    net = AnySubsetTransformer(TransformerConfig(vocab_size=cfg["vocab_size"], causal=False, **cfg["transformer"]))
    state, _ = load_tensors(folder / "model.safetensors")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.to(device).eval(), cfg
