"""A tiny random-init AS-ARM folder with the shipped tokenizer (test helper)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from decoding.data.tokenizer import default_tokenizer_path
from decoding.nn.any_subset import AnySubsetTransformer, save_any_subset
from decoding.nn.transformer import TransformerConfig


def tiny_model(folder: Path, seq_len: int = 48, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = AnySubsetTransformer(TransformerConfig(vocab_size=4096, dim=32, n_layers=2, n_heads=2, max_len=seq_len, causal=False))
    extra = {"seq_len": seq_len, "mask_token_id": 4096, "banned_tokens": [0, 1, 3], "eot_id": 2, "tokenizer": "tokenizer.model"}
    save_any_subset(net, folder, extra=extra, dtype=torch.float16)
    shutil.copyfile(default_tokenizer_path(), folder / "tokenizer.model")
    return folder
