"""Llama-architecture Hugging Face checkpoints loaded into our own :class:`~decoding.nn.transformer.Transformer`.

Reads ``config.json`` and ``*.safetensors`` directly (transformers is not needed), so the fast
GPU path runs on machines without transformers. The mapping is exact: our transformer uses the
same pre-norm RMSNorm, half-split rotary embedding, SwiGLU and grouped-query attention as
transformers' ``LlamaForCausalLM`` (Touvron et al., arXiv 2302.13971); the test
``tests/text/test_llama_native.py`` checks equal logits on SmolLM2.

Only plain Llama configurations are accepted (default rope, no biases, SiLU, ``head_dim =
hidden / heads``); :func:`native_config` says why a checkpoint does not qualify so callers can
fall back to the transformers adapter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.nn.transformer import Transformer, TransformerConfig


class UnsupportedLlama(ValueError):
    """The checkpoint is not a plain Llama that the native path reproduces exactly."""


def _rope_theta(cfg: Mapping[str, Any]) -> float:
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    types = {params.get("rope_type"), scaling.get("rope_type"), scaling.get("type")} - {None, "default"}
    if types:
        rope_type = ", ".join(sorted(map(str, types)))
        raise UnsupportedLlama(f"rope type {rope_type!r} (only the default rotary embedding is native)")
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    return float(theta)


def native_config(cfg: Mapping[str, Any], max_len: int | None = None) -> TransformerConfig:
    """Translate a transformers Llama ``config.json`` dict into a :class:`TransformerConfig`.

    Raises:
        UnsupportedLlama: for anything the native transformer would not reproduce exactly.
    """
    if cfg.get("model_type") != "llama":
        raise UnsupportedLlama(f"model_type {cfg.get('model_type')!r} is not 'llama'")
    if cfg.get("hidden_act", "silu") != "silu":
        raise UnsupportedLlama(f"activation {cfg.get('hidden_act')!r} (only silu)")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise UnsupportedLlama("attention or MLP biases")
    dim, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or dim // heads
    if head_dim * heads != dim:
        raise UnsupportedLlama(f"head_dim {head_dim} * heads {heads} != hidden_size {dim}")
    if cfg.get("pretraining_tp", 1) not in (1, None):
        raise UnsupportedLlama("pretraining_tp > 1")
    return TransformerConfig(
        vocab_size=int(cfg["vocab_size"]),
        dim=dim,
        n_layers=int(cfg["num_hidden_layers"]),
        n_heads=heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        hidden=int(cfg["intermediate_size"]),
        max_len=int(max_len or cfg.get("max_position_embeddings", 2048)),
        causal=True,
        rope_theta=_rope_theta(cfg),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
    )


def hf_to_native_state(sd: Mapping[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Rename (and fuse k|v, gate|up) transformers Llama weights into our parameter names."""
    out: dict[str, Tensor] = {"embed.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        b = f"blocks.{i}."
        out[b + "attn_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[b + "mlp_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        out[b + "q.weight"] = sd[p + "self_attn.q_proj.weight"]
        out[b + "kv.weight"] = torch.cat([sd[p + "self_attn.k_proj.weight"], sd[p + "self_attn.v_proj.weight"]], 0)
        out[b + "o.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[b + "gate_up.weight"] = torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]], 0)
        out[b + "down.weight"] = sd[p + "mlp.down_proj.weight"]
    if not cfg.tie_embeddings:
        out["head.weight"] = sd["lm_head.weight"]
    return out


def native_to_hf_state(net: Transformer) -> dict[str, Tensor]:
    """The inverse of :func:`hf_to_native_state` (used to give transformers the same random weights)."""
    cfg = net.cfg
    sd = net.state_dict()
    kv_rows = cfg.n_kv_heads * (cfg.dim // cfg.n_heads)
    out = {"model.embed_tokens.weight": sd["embed.weight"], "model.norm.weight": sd["norm.weight"]}
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        b = f"blocks.{i}."
        out[p + "input_layernorm.weight"] = sd[b + "attn_norm.weight"]
        out[p + "post_attention_layernorm.weight"] = sd[b + "mlp_norm.weight"]
        out[p + "self_attn.q_proj.weight"] = sd[b + "q.weight"]
        out[p + "self_attn.k_proj.weight"] = sd[b + "kv.weight"][:kv_rows]
        out[p + "self_attn.v_proj.weight"] = sd[b + "kv.weight"][kv_rows:]
        out[p + "self_attn.o_proj.weight"] = sd[b + "o.weight"]
        out[p + "mlp.gate_proj.weight"] = sd[b + "gate_up.weight"][: cfg.hidden]
        out[p + "mlp.up_proj.weight"] = sd[b + "gate_up.weight"][cfg.hidden :]
        out[p + "mlp.down_proj.weight"] = sd[b + "down.weight"]
    out["lm_head.weight"] = sd["embed.weight"] if cfg.tie_embeddings else sd["head.weight"]
    return out


def read_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a transformers folder as a dict."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json; is it a transformers model folder?")
    return json.loads(path.read_text())


def load_native_llama(
    folder: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    max_len: int | None = None,
) -> Transformer:
    """Load a Llama safetensors folder into our :class:`Transformer` on ``device`` in ``dtype``.

    Raises:
        UnsupportedLlama: the checkpoint is not a plain Llama (use the transformers adapter).
        FileNotFoundError: no config.json or no safetensors weights in ``folder``.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = native_config(read_config(folder), max_len)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {folder}")
    sd: dict[str, Tensor] = {}
    for f in files:
        sd.update(load_file(str(f), device="cpu"))
    with torch.device("meta"):
        net = Transformer(cfg)
    state = hf_to_native_state(sd, cfg)
    net.load_state_dict(state, strict=True, assign=True)
    cos, sin = _rotary(cfg)
    net.rope_cos, net.rope_sin = cos, sin
    return net.to(device=device, dtype=dtype).eval()


def _rotary(cfg: TransformerConfig) -> tuple[Tensor, Tensor]:
    from decoding.nn.transformer import rotary_tables

    return rotary_tables(cfg.max_len, cfg.dim // cfg.n_heads, cfg.rope_theta)


SMOLLM2_135M = dict(
    vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, hidden=1536, rope_theta=100000.0,
    tie_embeddings=True, norm_eps=1e-5,
)
"""SmolLM2-135M's sizes (for random-weight speed benchmarks)."""
