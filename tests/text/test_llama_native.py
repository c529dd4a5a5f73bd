"""Llama checkpoints on our own transformer give transformers' logits (CPU, float32)."""

from __future__ import annotations

import pytest
import torch

from decoding.adapters.llama import (
    UnsupportedLlama,
    hf_to_native_state,
    load_native_llama,
    native_config,
    native_to_hf_state,
)
from decoding.adapters.native import NativeCausalLM
from decoding.adapters.static_cache import StaticCausalLM
from decoding.nn.transformer import Transformer
from decoding.processes.autoregressive import Autoregressive
from tests.text.tiny_llama import tiny_llama


def left_padded(vocab: int, lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), width), generator=g)
    mask = torch.arange(width)[None, :] >= torch.tensor([width - n for n in lengths])[:, None]
    return {"input_ids": ids.masked_fill(~mask, 2), "attention_mask": mask}


def hf_last_logits(model, batch) -> torch.Tensor:
    pos = (batch["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long(), position_ids=pos).logits[:, -1]


@pytest.mark.parametrize("tie", [True, False])
def test_tiny_llama_logits_equal_transformers(tmp_path, tie: bool) -> None:
    hf = tiny_llama(tie=tie)
    hf.save_pretrained(tmp_path)
    net = load_native_llama(tmp_path)
    batch = left_padded(64, [9, 4, 1])
    ref = hf_last_logits(hf, batch)
    state = Autoregressive().init(batch, None)
    for model in (NativeCausalLM(net), StaticCausalLM(net, capacity=16)):
        torch.testing.assert_close(model(state).logits, ref, atol=2e-5, rtol=1e-5)


def test_every_position_matches_transformers(tmp_path) -> None:
    hf = tiny_llama()
    hf.save_pretrained(tmp_path)
    net = load_native_llama(tmp_path)
    ids = torch.randint(3, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(input_ids=ids).logits
        ours, _ = net(ids)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-5)


def test_state_dict_round_trip() -> None:
    hf = tiny_llama(tie=False)
    cfg = native_config(hf.config.to_dict())
    net = Transformer(cfg)
    net.load_state_dict(hf_to_native_state(hf.state_dict(), cfg))
    back = native_to_hf_state(net)
    for k, v in hf.state_dict().items():
        assert torch.equal(back[k], v), k


@pytest.mark.parametrize(
    "change",
    [
        {"model_type": "mistral"},
        {"hidden_act": "gelu"},
        {"attention_bias": True},
        {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
        {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}},
        {"head_dim": 16},
    ],
)
def test_unsupported_configs_are_refused(change: dict) -> None:
    cfg = {**tiny_llama().config.to_dict(), **change}
    with pytest.raises(UnsupportedLlama):
        native_config(cfg)


def test_smollm2_logits_equal_transformers(smollm2_folder, smollm2_native) -> None:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(smollm2_folder).eval()
    batch = smollm2_native.encode(["The capital of France is", "Once upon a time, in a land far away,"], chat=False)
    batch = {k: v.cpu() for k, v in batch.items()}
    ref = hf_last_logits(hf, batch)
    ours = smollm2_native.model(Autoregressive().init(batch, None)).logits
    torch.testing.assert_close(ours, ref, atol=2e-4, rtol=1e-4)
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))
