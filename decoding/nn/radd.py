"""RADD: a bidirectional transformer without time input that predicts clean tokens at masked positions.

Ou et al., arXiv:2406.03736: the concrete score of absorbing diffusion factorizes into a time
scalar and ``p0(x^i | x^UM)``, so the denoiser is a plain encoder ``tokens (B, L) -> log-probs
(B, L, V)`` over the ``V`` clean tokens; the input vocabulary has one more id, the mask
(``mask_id = V``). Weights live in ``models/radd-<name>/`` (``config.json``,
``model.safetensors``, ``tokenizer.model``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from decoding.core.types import Prediction, State
from decoding.data.weights import load_tensors, save_model_folder
from decoding.nn.transformer import Transformer, TransformerConfig


class RADDNet(nn.Module):
    """``tokens (B, L)`` (ids ``< V`` or the mask id ``V``) -> ``(B, L, V)`` log-probabilities of clean tokens.

    Args:
        vocab_size: number of clean tokens ``V`` (the transformer's vocabulary is ``V + 1``).
        **sizes: :class:`TransformerConfig` fields (``dim``, ``n_layers``, ``n_heads``, ``max_len``, ...).
    """

    def __init__(self, vocab_size: int, **sizes: Any) -> None:
        super().__init__()
        sizes = {k: v for k, v in sizes.items() if k not in ("vocab_size", "causal")}
        self.vocab_size = int(vocab_size)
        self.mask_id = self.vocab_size
        self.net = Transformer(TransformerConfig(vocab_size=self.vocab_size + 1, causal=False, **sizes))

    @property
    def cfg(self) -> TransformerConfig:
        return self.net.cfg

    def forward(self, tokens: Tensor, backend: str | None = None) -> Tensor:
        logits, _ = self.net(tokens, backend=backend)
        return torch.log_softmax(logits[..., : self.vocab_size].float(), dim=-1)

    def config_dict(self) -> dict[str, Any]:
        sizes = self.cfg.to_dict()
        sizes.pop("vocab_size")
        sizes.pop("causal")
        return {"kind": "masked-diffusion", "defaults": {"steps": 128, "sampler": "tweedie", "noise": "loglinear", "cache": True},
                "model_type": "radd", "vocab_size": self.vocab_size, "mask_id": self.mask_id, "transformer": sizes}


class RADDModel:
    """Engine model: ``state -> Prediction(logits=(B, L, V) log-probs)``; ignores ``state.t``.

    ``time_independent = True`` lets :class:`decoding.wrappers.cache.CachedModel` reuse its output.
    """

    time_independent = True

    def __init__(self, net: RADDNet, backend: str | None = None) -> None:
        self.net = net
        self.backend = backend

    @property
    def mask_id(self) -> int:
        return self.net.mask_id

    @property
    def max_length(self) -> int:
        return int(self.net.cfg.max_len)

    @torch.inference_mode()
    def __call__(self, state: State) -> Prediction:
        return Prediction(logits=self.net(state.x, backend=self.backend))


def save_radd(net: RADDNet, folder: str | Path, extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (in ``dtype``, default the weights' own) into ``folder``."""
    cfg = {**net.config_dict(), **(extra or {})}
    return save_model_folder(folder, net.state_dict(), cfg, dtype, metadata={"format": "pt", "model_type": "radd"})


def load_radd(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> RADDNet:
    """Load a RADD network saved by :func:`save_radd` (eval mode, on ``device`` in ``dtype``)."""
    path = Path(folder)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} is not a RADD model folder (needs config.json and model.safetensors)")
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("model_type") != "radd":
        raise ValueError(f"{path}/config.json has model_type {cfg.get('model_type')!r}, expected 'radd'")
    net = RADDNet(cfg["vocab_size"], **cfg["transformer"])
    state, _ = load_tensors(path / "model.safetensors")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return cast(net, device, dtype).eval()


def cast(net: RADDNet, device: str | torch.device, dtype: torch.dtype) -> RADDNet:
    """Move ``net`` to ``device`` with weights in ``dtype``; the rotary tables stay float32 (bf16 cos/sin lose precision)."""
    net = net.to(device=device, dtype=dtype)
    net.net.rope_cos = net.net.rope_cos.float()
    net.net.rope_sin = net.net.rope_sin.float()
    return net
