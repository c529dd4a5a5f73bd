"""``StaticCausalLM(fused="auto")``: the fused step only for batches whose every kernel has a measured launch
(the shipped table, decoding/nn/fused_decode_tuned.json), the unfused step for the others and off CUDA."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from decoding.adapters.llama import SMOLLM2_135M
from decoding.adapters.static_cache import StaticCausalLM
from decoding.nn import fused_decode as fd
from decoding.nn.transformer import Transformer, TransformerConfig

SHIPPED = json.loads((Path(fd.__file__).parent / "fused_decode_tuned.json").read_text())["best"]


def smollm2_cfg(**over) -> TransformerConfig:
    return TransformerConfig(**{**SMOLLM2_135M, **over})


def test_layer_tuned_reads_the_shipped_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fd, "TUNED", SHIPPED)
    cfg = smollm2_cfg()
    dims = (cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.dim // cfg.n_heads, cfg.hidden)
    assert fd.layer_tuned(1, *dims)
    assert not fd.layer_tuned(2, *dims)  # batch-1 launches are not carried to larger batches
    assert not fd.layer_tuned(1, 512, *dims[1:])  # another layer size
    monkeypatch.setattr(fd, "TUNED", [r for r in SHIPPED if r["kernel"] != "norm_gate_up_silu"])
    assert not fd.layer_tuned(1, *dims)  # every kernel of the layer needs its row
    monkeypatch.setattr(fd, "TUNED", [])
    assert not fd.layer_tuned(1, *dims)


def test_auto_fuses_only_tuned_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fd, "TUNED", SHIPPED)
    net = SimpleNamespace(cfg=smollm2_cfg())
    auto = SimpleNamespace(fused=True, fused_auto=True, net=net)  # as on a Hopper GPU with triton
    assert StaticCausalLM.fuses(auto, 1) and not StaticCausalLM.fuses(auto, 2)
    assert not StaticCausalLM.fuses(auto, 64)
    forced = SimpleNamespace(fused=True, fused_auto=False, net=net)
    assert all(StaticCausalLM.fuses(forced, b) for b in (1, 2, 8)) and not StaticCausalLM.fuses(forced, 9)
    assert not StaticCausalLM.fuses(SimpleNamespace(fused=False, fused_auto=True, net=net), 1)


def test_auto_off_cuda_is_the_unfused_engine() -> None:
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden=64)).eval()
    auto, plain = StaticCausalLM(net, capacity=32, fused="auto"), StaticCausalLM(net, capacity=32)
    assert auto.fused_auto and not auto.fused and auto.backend is None and not auto.fuses(1)
    assert not auto.pdl and not plain.pdl  # PDL's auto follows the fusing: off here
    sessions = [lm.session(2, 8) for lm in (auto, plain)]
    assert not any(s.fused for s in sessions)
    for sess in sessions:
        sess.valid[:, :5] = True
        sess.slot.fill_(4)
        sess.tok.fill_(7)
    with torch.no_grad():
        assert torch.equal(auto._decode_step(sessions[0]), plain._decode_step(sessions[1]))
    with pytest.raises(ValueError, match="fused must be True, False or 'auto'"):
        StaticCausalLM(net, capacity=32, fused="yes")
    with pytest.raises(ValueError, match="pdl must be True, False or None"):
        StaticCausalLM(net, capacity=32, fused="auto", pdl="on")


def test_pdl_sessions_skip_the_compiled_step() -> None:
    """With PDL, fused sessions run the uncompiled step (inductor would drop ``launch_pdl``) while the auto
    engine's unfused sessions keep the compiled one."""
    calls = []
    lm = SimpleNamespace(pdl=True, _compiled=lambda sess: calls.append("compiled") or "compiled",
                         _decode_step=lambda sess, upto: calls.append("eager") or "eager")
    assert StaticCausalLM.step_fn(lm, SimpleNamespace(fused=True)) == "eager"
    assert StaticCausalLM.step_fn(lm, SimpleNamespace(fused=False)) == "compiled"
    lm.pdl = False
    assert StaticCausalLM.step_fn(lm, SimpleNamespace(fused=True)) == "compiled"
    assert calls == ["eager", "compiled", "compiled"]


@pytest.mark.gpu
def test_auto_on_the_gpu_fuses_batch_1_and_leaves_batch_3_unfused() -> None:
    """float32, CUDA graphs: at batch 1 the auto engine (fused, PDL, uncompiled) gives the forced fused PDL
    engine's tokens, at batch 3 the unfused compiled engine's (both exactly)."""
    from decoding import decode
    from decoding.processes.autoregressive import Autoregressive
    from decoding.processors import standard_processors
    from tests.nn.test_fused_decode import masked_prompt

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("needs a Hopper (or later) GPU")
    torch.manual_seed(0)
    net = Transformer(smollm2_cfg(n_layers=2, max_len=512)).to("cuda").eval()
    procs = standard_processors(temperature=0.8, top_p=0.95)
    auto = StaticCausalLM(net, capacity=96, fused="auto")
    assert auto.fuses(1) and not auto.fuses(3) and auto.pdl and auto.compile
    peers = ((1, StaticCausalLM(net, capacity=96, fused=True, pdl=True)), (3, StaticCausalLM(net, capacity=96)))
    for b, peer in peers:
        prompt = masked_prompt(b, net.cfg.vocab_size)
        ours = decode(auto, Autoregressive(), prompt, steps=24, processors=procs, seed=3).x
        assert torch.equal(ours, decode(peer, Autoregressive(), prompt, steps=24, processors=procs, seed=3).x), b
