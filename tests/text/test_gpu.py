"""CUDA paths of the native engine (run on a GPU machine: ``pytest -m gpu tests/text``).

CUDA graphs replay the same kernels as eager calls, so graph and eager runs must give identical
tokens; torch.compile changes rounding, so compiled logits are compared with a tolerance.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from decoding import decode
from decoding.adapters.static_cache import StaticCausalLM
from decoding.core.syncs import PACKAGE, count_syncs, sync_stacks
from decoding.nn.transformer import Transformer, TransformerConfig
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from decoding.processors import standard_processors

pytestmark = pytest.mark.gpu

PROCS = standard_processors(temperature=0.9, top_k=50, top_p=0.95, typical=0.9, repetition_penalty=1.1)


@pytest.fixture(scope="module")
def net():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=1000, dim=128, n_layers=3, n_heads=4, n_kv_heads=2, max_len=512)
    return Transformer(cfg).eval().to("cuda", torch.bfloat16)


def prompt(b: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 1000, (b, 12), generator=g)
    mask = torch.ones(b, 12, dtype=torch.bool)
    mask[0, :5] = False
    return {"input_ids": ids.cuda(), "attention_mask": mask.cuda()}


@pytest.mark.parametrize("backend", [None, "sdpa"])
def test_graphs_give_the_eager_tokens(net, backend) -> None:
    eager = StaticCausalLM(net, capacity=64, backend=backend, compile=False, cuda_graphs=False)
    graphs = StaticCausalLM(net, capacity=64, backend=backend, compile=False, cuda_graphs=True)
    proc = Autoregressive(eos_token_id=[5], pad_token_id=0)
    a = decode(eager, proc, prompt(), steps=40, processors=PROCS, seed=3, sync_every=1)
    b = decode(graphs, proc, prompt(), steps=40, processors=PROCS, seed=3, sync_every=1)
    c = decode(graphs, proc, prompt(), steps=40, processors=PROCS, seed=3)  # default: host checks every 8 steps
    assert torch.equal(a.x, b.x)
    assert generated_tokens(a.state) == generated_tokens(c.state)
    assert torch.equal(a.nfe, c.nfe)


def test_decode_does_not_wait_for_the_gpu_every_step(net) -> None:
    """Between host checks the loop queues steps without a synchronisation (the graph replay runs inside decode).

    Counted: synchronisations made from ``decoding/`` (the prompt is built outside the counted
    call). The loop's own are one look every ``sync_every`` steps and one final read; the prefill
    may add one. So 32 more steps add exactly ``32 / sync_every`` of them.
    """
    lm = StaticCausalLM(net, capacity=128, compile=False, cuda_graphs=True)
    proc = Autoregressive(eos_token_id=None, pad_token_id=0)
    inputs = prompt()
    decode(lm, proc, inputs, steps=4, processors=PROCS, seed=0)  # warm-up and capture
    counts = {}
    for steps in (64, 96):
        counts[steps] = count_syncs(lambda n=steps: decode(lm, proc, inputs, steps=n, processors=PROCS, seed=0,
                                                           sync_every=16), within=PACKAGE)
    stacks = sync_stacks(lambda: decode(lm, proc, inputs, steps=64, processors=PROCS, seed=0, sync_every=16))
    detail = {"64": counts[64], "96": counts[96],  # every sync of a 64-step run, innermost 6 frames first
              "all (64)": [" < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(st[-6:])) for st in stacks]}
    assert sum(counts[96].values()) - sum(counts[64].values()) == 32 // 16, detail
    assert sum(counts[64].values()) <= 64 // 16 + 1 + 1, detail


def test_compiled_step_is_close_to_eager(net) -> None:
    pytest.importorskip("triton")
    eager = StaticCausalLM(net, capacity=64, compile=False, cuda_graphs=False)
    comp = StaticCausalLM(net, capacity=64, compile=True, cuda_graphs=True)
    proc = Autoregressive(greedy=True)
    s_e = s_c = proc.init(prompt(), None)
    for _ in range(6):
        pe, pc = eager(s_e), comp(s_c)
        torch.testing.assert_close(pc.logits, pe.logits, atol=0.1, rtol=0.05)
        s_e = proc.step(s_e, pe, torch.tensor(0), None)
        s_c = replace(s_e, memory={**s_e.memory, **pc.memory})  # same tokens, the compiled model's cache


def test_generate_on_cuda(tmp_path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from decoding.adapters.smollm2 import smollm2_dir

    try:
        smollm2_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    import decoding as dc

    out = dc.generate(dc.load("smollm2", device="cuda"), "What is the capital of France?", max_new_tokens=8,
                      sampling=dc.Sampling(greedy=True))
    assert "Paris" in out.text[0]
