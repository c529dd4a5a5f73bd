"""The transformers adapter: greedy decoding equals ``generate()``, the cache rolls back, bad paths fail clearly."""

from __future__ import annotations

import json

import pytest
import torch

from decoding import decode
from decoding.adapters.hf import HFCausalLM, resolve_source
from decoding.adapters.text_lm import load_text_lm
from decoding.processes.autoregressive import Autoregressive
from tests.text.test_llama_native import left_padded
from tests.text.tiny_llama import tiny_llama


def test_greedy_equals_transformers_generate_on_a_ragged_batch() -> None:
    hf = tiny_llama(seed=1)
    batch = left_padded(64, [7, 3, 5], seed=2)
    ref = hf.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long(), do_sample=False,
                      max_new_tokens=12, min_new_tokens=12, pad_token_id=2)
    out = decode(HFCausalLM(hf), Autoregressive(greedy=True, pad_token_id=2), batch, steps=12)
    assert torch.equal(out.x, ref)


def test_prompt_ids_outside_the_vocabulary_are_a_clear_error() -> None:
    hf = tiny_llama(seed=1)
    batch = left_padded(64, [7, 3], seed=2)
    vocab = hf.get_input_embeddings().num_embeddings
    batch["input_ids"][0, -1] = vocab
    with pytest.raises(ValueError, match=rf"token id {vocab} is outside the model's vocabulary \[0, {vocab}\)"):
        decode(HFCausalLM(hf), Autoregressive(greedy=True, pad_token_id=2), batch, steps=2)


def test_cache_rolls_back_to_a_shorter_state() -> None:
    model = HFCausalLM(tiny_llama(seed=2))
    proc = Autoregressive()
    states = [proc.init(left_padded(64, [5, 2]), None)]
    logits = []
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        pred = model(states[-1])
        logits.append(pred.logits)
        states.append(proc.step(states[-1], pred, torch.tensor(0), gen))
    torch.testing.assert_close(model(states[1]).logits, logits[1], atol=1e-5, rtol=1e-5)


def test_smollm2_engines_agree_with_generate(smollm2_native, smollm2_hf) -> None:
    batch = smollm2_hf.encode(["The capital of France is", "Water boils at"], chat=False)
    ref = smollm2_hf.model.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long(),
                                          do_sample=False, max_new_tokens=6, min_new_tokens=6, pad_token_id=2)
    for lm in (smollm2_hf, smollm2_native):
        out = decode(lm.model, Autoregressive(greedy=True, pad_token_id=2), batch, steps=6)
        assert torch.equal(out.x, ref), lm.engine


def test_bad_model_paths(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_source(tmp_path / "missing")
    with pytest.raises(ValueError, match="no config.json"):
        resolve_source(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .gguf"):
        resolve_source(tmp_path / "weights.bin")
    vit = tmp_path / "vit"
    vit.mkdir()
    (vit / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="not a decoder-only causal LM"):
        load_text_lm(vit)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a transformers causal LM"):
        load_text_lm(junk)
    with pytest.raises(ValueError, match="unknown engine"):
        load_text_lm("smollm2", engine="fast")


def test_engine_choice(tiny_llama_dir) -> None:
    assert load_text_lm(tiny_llama_dir).engine == "native"
    assert load_text_lm(tiny_llama_dir, engine="hf").engine == "hf"
    # the fused kernels run on CUDA (triton): refused on the CPU with the reason, not silently unfused
    with pytest.raises(ValueError, match="fused=True needs triton and a CUDA model"):
        load_text_lm(tiny_llama_dir, engine="fused")
    cfg = json.loads((tiny_llama_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama"


@pytest.mark.slow
def test_gguf_file_loads_through_transformers(smollm2_folder) -> None:
    import decoding as dc
    from decoding.adapters.smollm2 import gguf_path

    lm = dc.load(gguf_path(), device="cpu")  # dequantised on load (minutes): the native engine takes folders
    assert lm.engine == "hf" and lm.has_chat_template
    out = dc.generate(lm, "What is the capital of France?", max_new_tokens=6, sampling=dc.Sampling(greedy=True))
    assert "Paris" in out.text[0]
