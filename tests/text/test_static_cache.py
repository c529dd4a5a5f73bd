"""The static-KV-cache model computes exactly what the plain loop computes, whatever ``sync_every``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from decoding import decode
from decoding.adapters.native import NativeCausalLM
from decoding.adapters.static_cache import StaticCausalLM
from decoding.core.loop import NonFiniteLogitsError
from decoding.nn.transformer import Transformer, TransformerConfig
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from decoding.processors import standard_processors

V = 40


@pytest.fixture(scope="module")
def net() -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_len=256)).eval()


def prompt() -> dict[str, torch.Tensor]:
    ids = torch.randint(0, V, (4, 6), generator=torch.Generator().manual_seed(5))
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, :4] = False
    mask[2, :1] = False
    return {"input_ids": ids.masked_fill(~mask, 0), "attention_mask": mask}


PROCS = standard_processors(temperature=0.9, top_k=30, top_p=0.95, min_p=0.01, typical=0.9, repetition_penalty=1.2)


@pytest.mark.parametrize("greedy", [False, True])
def test_static_cache_equals_concat_cache(net, greedy: bool) -> None:
    proc = Autoregressive(eos_token_id=[3, 7], pad_token_id=0, greedy=greedy)
    a = decode(NativeCausalLM(net), proc, prompt(), steps=25, processors=PROCS, seed=2)
    b = decode(StaticCausalLM(net, capacity=8), proc, prompt(), steps=25, processors=PROCS, seed=2)  # grows twice
    assert torch.equal(a.x, b.x)
    assert torch.equal(a.nfe, b.nfe)


@pytest.mark.parametrize("sync_every", [5, 64])
@pytest.mark.parametrize("greedy", [False, True])
def test_deferred_host_checks_change_no_token(net, greedy: bool, sync_every: int) -> None:
    """The loop reads done flags every ``sync_every`` steps (as on CUDA): same tokens, NFE and flags."""
    lm = StaticCausalLM(net, capacity=32)
    proc = Autoregressive(eos_token_id=[3, 7], pad_token_id=0, greedy=greedy)
    ref = decode(lm, proc, prompt(), steps=25, processors=PROCS, seed=4)
    out = decode(lm, proc, prompt(), steps=25, processors=PROCS, seed=4, sync_every=sync_every)
    assert generated_tokens(out.state) == generated_tokens(ref.state)
    assert torch.equal(out.nfe, ref.nfe) and torch.equal(out.state.done, ref.state.done)
    assert ref.steps <= out.steps <= min(25, ref.steps + sync_every - 1)


def test_rollback_gives_the_logits_of_a_fresh_prefix(net) -> None:
    lm = StaticCausalLM(net, capacity=32)
    proc = Autoregressive()
    state = proc.init(prompt(), None)
    gen = torch.Generator().manual_seed(0)
    states, logits = [state], []
    for _ in range(5):
        pred = lm(states[-1])
        logits.append(pred.logits)
        states.append(proc.step(states[-1], pred, torch.tensor(0), gen))
    again = lm(states[2])  # back two tokens: the session rolls back
    torch.testing.assert_close(again.logits, logits[2], atol=1e-5, rtol=1e-5)
    fresh = StaticCausalLM(net, capacity=32)(proc.init({"input_ids": states[2].x, "attention_mask": states[2].memory["attention_mask"]}, None))
    torch.testing.assert_close(fresh.logits, logits[2], atol=1e-5, rtol=1e-5)


def test_a_state_from_an_older_prompt_is_refused(net) -> None:
    lm = StaticCausalLM(net, capacity=32)
    proc = Autoregressive()
    old = proc.init(prompt(), None)
    old = proc.step(old, lm(old), torch.tensor(0), torch.Generator().manual_seed(0))
    lm(proc.init(prompt(), None))  # a new prompt claims the cache
    with pytest.raises(ValueError, match="claimed by a newer prompt"):
        lm(old)


class NaNAt:
    """Wraps a model: NaN logits from the ``k``-th call on."""

    def __init__(self, lm: StaticCausalLM, k: int) -> None:
        self.lm, self.k, self.calls = lm, k, 0

    def __call__(self, state):
        pred = self.lm(state)
        self.calls += 1
        if self.calls > self.k:
            logits = pred.logits.clone()
            logits[1, 3] = float("nan")
            pred = replace(pred, logits=logits)
        return pred


def test_nan_logits_are_reported_with_the_step(net) -> None:
    lm = StaticCausalLM(net, capacity=32)
    with pytest.raises(NonFiniteLogitsError, match="step 3"):
        decode(NaNAt(lm, 3), Autoregressive(), prompt(), steps=10, seed=0)
    bad = Transformer(net.cfg).eval()
    bad.load_state_dict(net.state_dict())
    with torch.no_grad():
        bad.norm.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLogitsError, match="step 0"):
        decode(StaticCausalLM(bad), Autoregressive(), prompt(), steps=4, seed=0, sync_every=8)


def test_fused_options_that_do_not_apply_are_refused(net) -> None:
    """``fused_combine`` only chooses between forms of the fused step; without it, it is refused,
    and ``fused=True`` needs the triton decode attention (and triton on CUDA, or the interpreter)."""
    with pytest.raises(ValueError, match="fused_combine=False applies to the fused step only"):
        StaticCausalLM(net, capacity=8, fused_combine=False)
    with pytest.raises(ValueError, match="fused=True"):
        StaticCausalLM(net, capacity=8, fused=True, backend="sdpa")


def test_the_compiled_cuda_step_takes_the_attention_kernel_where_its_row_beat_sdpa(net, monkeypatch) -> None:
    """``step_attention``: a compiled CUDA model with no forced backend runs our split-K kernel at the batches whose
    launch-table row was timed faster than SDPA, and the model's attention everywhere else (a forced backend,
    an uncompiled step, the CPU, a batch whose row lost)."""
    from decoding.nn import decode_attention as da
    from decoding.nn import fused_decode as fd

    cfg = net.cfg
    features = cfg.dim  # n_heads * head_dim
    win = {"kernel": "decode_attention", "K": 72, "N": features, "batch": 64, "block": 32, "block_k": 64,
           "warps": 4, "dot": False, "us": 6.0, "peer_us": 17.0, "peer": "sdpa"}
    monkeypatch.setattr(fd, "TUNED", [win, {**win, "batch": 4, "us": 20.0}])
    monkeypatch.setattr(da, "triton_available", lambda: True)
    model = StaticCausalLM(net, capacity=64, compile=True, cuda_graphs=False)
    assert model.step_attention(64, 72) is None  # a CPU model: SDPA as before
    monkeypatch.setattr(StaticCausalLM, "device", property(lambda self: torch.device("cuda")))
    assert model.step_attention(64, 72) == "triton" and model.step_attention(33, 200) == "triton"
    assert model.step_attention(32, 72) is None  # a launch serves batches above half its own
    assert model.step_attention(4, 72) is None and model.step_attention(65, 72) is None
    model.backend = "sdpa"
    assert model.step_attention(64, 72) is None  # a forced backend wins
    model.backend, model.compile = None, False
    assert model.step_attention(64, 72) is None  # the eager step keeps the model's attention


@pytest.mark.parametrize("make", [NativeCausalLM, lambda net: StaticCausalLM(net, capacity=32)])
@pytest.mark.parametrize("bad", [V, V + 7, -1])
def test_prompt_ids_outside_the_vocabulary_are_a_clear_error(net, make, bad: int) -> None:
    """An id the embedding has no row for is named with the vocabulary's range (it was torch's bare IndexError)."""
    p = prompt()
    p["input_ids"][1, 3] = bad
    with pytest.raises(ValueError, match=rf"token id {bad} is outside the model's vocabulary \[0, {V}\)"):
        decode(make(net), Autoregressive(pad_token_id=0), p, steps=2, seed=0)
