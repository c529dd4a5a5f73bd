"""A tiny random transformers Llama for the text tests."""

from __future__ import annotations

import torch

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-5)


def tiny_llama(vocab_size: int = 64, tie: bool = True, seed: int = 0, **over):
    """A random transformers LlamaForCausalLM (float32, eval mode)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2,
                      pad_token_id=2, **{**TINY, **over})
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # RMSNorm weights away from 1 so that a wrong norm mapping shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    return model
