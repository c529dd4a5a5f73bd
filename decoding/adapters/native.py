"""Our own :class:`~decoding.nn.transformer.Transformer` as an autoregressive engine model.

The first call runs the whole (left-padded) prompt; later calls feed only the last token and
reuse the KV cache kept in ``state.memory["kv"]``. Positions skip padding, so a left-padded row
gets the same logits as the same prompt alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.nn.transformer import Transformer, check_token_ids


class NativeCausalLM:
    """``state -> Prediction(logits (B, V), memory={"kv": cache})`` for a causal :class:`Transformer`."""

    def __init__(self, net: Transformer, backend: str | None = None) -> None:
        if not net.cfg.causal:
            raise ValueError("NativeCausalLM needs a causal transformer (TransformerConfig(causal=True))")
        self.net = net
        self.backend = backend

    @torch.inference_mode()
    def __call__(self, state: State) -> Prediction:
        am: Tensor = state.memory["attention_mask"]  # (B, Ltotal) bool
        cache = state.memory.get("kv")
        past = 0 if cache is None else cache[0][0].shape[2]
        tokens = state.x[:, past:]
        if cache is None:
            check_token_ids(tokens, self.net.cfg.vocab_size)
        n = tokens.shape[1]
        positions = (am.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
        lk = past + n
        causal = torch.arange(lk, device=am.device)[None, :] <= (past + torch.arange(n, device=am.device))[:, None]
        mask = (causal[None] & am[:, None, :lk])[:, None]  # (B, 1, n, lk)
        logits, new_cache = self.net(tokens, positions=positions, cache=cache, mask=mask, backend=self.backend)
        return Prediction(logits=logits[:, -1].float(), memory={"kv": new_cache})
