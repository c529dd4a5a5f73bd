"""The compiled one-token step fuses RMSNorm, rotary and SwiGLU into the kernels around the matmuls.

No custom kernel: :func:`decoding.adapters.static_cache.static_forward` is written so that inductor
puts, per layer, the rotary rotation of q and k together with the KV-cache write in one kernel,
the residual add with the next RMSNorm in one kernel, and ``silu(g) * u`` in one kernel; the first
layer's RMSNorm joins the embedding lookup. So a step runs ``1 + 4 * layers`` generated kernels
plus the matmuls and attention. The test reads inductor's generated code (C++ on the CPU, Triton on
a GPU: the same scheduler decides the fusion) and checks the compiled logits against eager ones
in float32.
"""

from __future__ import annotations

import re

import pytest
import torch

from decoding.adapters.static_cache import StaticCausalLM, StaticSession
from decoding.nn.transformer import Transformer, TransformerConfig

LAYERS = 3


def compiled_step(device: str, **options) -> tuple[torch.Tensor, torch.Tensor, list[str], StaticSession]:
    """One decode step of a 3-layer model (batch 2, a filled cache, a left-padded row), eager and
    through ``torch.compile(fullgraph=True)``: (eager logits, compiled logits, the compiled module's
    code, the session with its cache). ``options`` go to :class:`StaticCausalLM` (default: the ``"sdpa"`` backend)."""
    from torch._inductor.utils import run_and_get_code

    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=512, dim=64, n_layers=LAYERS, n_heads=4, n_kv_heads=2, hidden=128)
    net = Transformer(cfg).to(device).eval()
    lm = StaticCausalLM(net, capacity=64, compile=False, cuda_graphs=False, **{"backend": "sdpa", **options})
    sess = lm.session(2, 16)
    for layer in range(LAYERS):  # a filled cache, so attention has something to read
        sess.k[layer].normal_()
        sess.v[layer].normal_()
    sess.valid[:, :5] = True
    sess.valid[0, 0] = False  # a left-padded row
    sess.slot.fill_(4)
    sess.tok.fill_(7)
    with torch.no_grad():
        eager = lm._decode_step(sess).clone()
        torch._dynamo.reset()
        # fullgraph: one step is one graph (a graph break would split it and the kernels of repeated
        # layers would come from a cached graph, uncounted; as on the first H100 run)
        out, codes = run_and_get_code(torch.compile(lm._decode_step, dynamic=False, fullgraph=True), sess)
    return eager, out, codes, sess


def generated_kernels(code: str) -> list[str]:
    """Names of the generated kernels the step launches, in order, one entry per launch.

    Kernels are the names the module defines with ``NAME = async_compile.<kind>(...)`` (C++
    ``cpp_fused_*``, Triton ``triton_*``, whatever inductor calls them); a launch is a line that
    calls one, as ``NAME(...)`` (C++) or ``NAME.run(...)`` (Triton). Identical kernels of repeated
    layers are defined once and launched once per layer.
    """
    defined = set(re.findall(r"^(\w+) = async_compile\.\w+\(", code, re.M))
    return [name for name in re.findall(r"^\s+(\w+)(?:\.run)?\(", code, re.M) if name in defined]


def check(eager: torch.Tensor, out: torch.Tensor, codes: list[str], most: int) -> None:
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    assert len(codes) == 1, f"{len(codes)} compiled modules for one step"
    kernels = generated_kernels(codes[0])
    print(f"{len(kernels)} generated kernels:", *kernels, sep="\n")  # in full on a failure (captured stdout)
    assert 1 + 4 * LAYERS <= len(kernels) <= most, f"{len(kernels)} kernels, at most {most} expected"
    joined = " ".join(kernels)
    rotary_and_write = len(re.findall(r"index_put\w*mul", joined)) + len(re.findall(r"mul\w*index_put", joined))
    assert rotary_and_write >= LAYERS, "rotary and cache write not fused"
    assert joined.count("silu") == LAYERS, "silu(g) * u not one kernel a layer"
    assert len(re.findall(r"add\w*rsqrt", joined)) >= 2 * LAYERS, "residual add and RMSNorm not fused"


@pytest.mark.slow
def test_compiled_step_fuses_norm_rotary_swiglu_on_cpu() -> None:
    check(*compiled_step("cpu")[:3], most=1 + 4 * LAYERS)


@pytest.mark.gpu
@pytest.mark.xfail(strict=True, reason="issue 23, open: on an H100 (2026-12-07 08:34 UTC) inductor emitted 21 kernels "
                   "for the 3-layer step (27 before the one-buffer cache write), not <= 15: q's rotary is its own kernel "
                   "(SDPA reads it) and SDPA's output is copied before the head reshape (docs/perf/gpu_speed.md)")
def test_compiled_step_fuses_norm_rotary_swiglu_on_gpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("triton")
    # on CUDA the positions (a row sum) and the attention mask may take a kernel each per step: the
    # first H100 run (2026-12-07) showed `triton_per_fused__to_copy_sub_sum` and
    # `triton_poi_fused__scaled_dot_product_efficient_attention_expand_scalar_tensor_where`
    check(*compiled_step("cuda")[:3], most=3 + 4 * LAYERS)
