"""The Triton split-K decode attention kernel, checked on CPU by Triton's interpreter.

The cases live in ``triton_interpret_cases.py``; they run in a fresh Python process with
``TRITON_INTERPRET=1`` set before triton is imported (see there). On a GPU machine the kernel's
compiled form is checked by the ``gpu`` test below.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from tests.nn.triton_helpers import compile_for_h100, run_cases_under_interpreter  # noqa: E402


def test_kernel_cases_under_the_interpreter() -> None:
    run_cases_under_interpreter("tests/nn/triton_interpret_cases.py", timeout=600)


@pytest.mark.parametrize("scale_type", ["fp32", "fp64"])
@pytest.mark.parametrize(("dot", "block_g", "block_n"), [(True, 16, 64), (False, 4, 16), (False, 4, 64), (False, 2, 32),
                                                     ("mma", 16, 32), ("mma", 16, 64)])
def test_kernel_compiles_for_an_h100_with_inductors_signature(scale_type: str, dot: bool | str, block_g: int,
                                                              block_n: int) -> None:
    """Triton's compiler front end and the CUDA back end run without a GPU: compile for sm_90.

    Inside a compiled step, inductor (torch 2.11+) passes the Python float ``scale`` as ``fp64``;
    the first H100 run (2026-12-07, Triton 3.6.0) failed there ("Both operands must be same
    dtype. Got fp64 and fp32" in the second ``tl.dot``).
    """
    from decoding.nn import decode_attention as da

    if da.interpreting():
        pytest.skip("TRITON_INTERPRET=1: the jitted kernel is the interpreter's")
    mma = dot == "mma"
    constexprs = {"HKV": 3, "CHUNK": 128, "BLOCK_G": block_g, "BLOCK_N": block_n, "BLOCK_D": 64, "DOT": bool(dot),
                  "PDL": False, "MMA": mma, "UPCAST": False}
    names = da._JIT.arg_names
    sig = {}
    for name in names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in ("q_ptr", "k_ptr", "v_ptr"):
            sig[name] = "*bf16"
        elif name in ("o_ptr", "lse_ptr"):
            sig[name] = "*fp32"
        elif name == "valid_ptr":
            sig[name] = "*i8"
        else:
            sig[name] = scale_type if name == "scale" else "i32"
    compiled = compile_for_h100(da._JIT, sig, constexprs)
    assert "ttir" in compiled.asm
    if "ptx" in compiled.asm:  # float32 operands, "ieee": no tensor-core mma even with tl.dot (FMAs on 16 padded rows)
        # with MMA the bf16 products run on tensor cores (Hopper's wgmma or mma.sync)
        assert ("mma" in compiled.asm["ptx"]) == mma


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_on_the_gpu_equals_reference(dtype: torch.dtype) -> None:
    from decoding.nn.attention import naive_attention
    from decoding.nn.decode_attention import decode_attention

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gen = torch.Generator("cuda").manual_seed(0)
    b, hkv, g, d, s = 64, 3, 3, 64, 300  # SmolLM2-135M's heads, a 300-slot cache
    q, k, v = (torch.randn(b, hkv, n, d, device="cuda", generator=gen).to(dtype) for n in (g, s, s))
    valid = torch.rand(b, s, device="cuda", generator=gen) < 0.9
    valid[1] = False
    out = decode_attention(q, k, v, valid)
    ref = naive_attention(q.float(), k.float(), v.float(), valid[:, None, None, :], d**-0.5)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    graph = torch.cuda.CUDAGraph()  # capturable: static shapes, no host sync
    decode_attention(q, k, v, valid)
    with torch.cuda.graph(graph):
        captured = decode_attention(q, k, v, valid)
    graph.replay()
    torch.testing.assert_close(captured, out, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("launch", [dict(dot=False, block_n=16, splits=3, num_warps=1),
                                    dict(dot=False, block_n=32, splits=5, num_warps=2),
                                    dict(dot=True, block_n=32, splits=2, num_warps=4)])
def test_launch_variants_on_the_gpu_equal_reference(launch: dict) -> None:
    """The CUDA-core variant and the launch knobs at batches 1 and 3, a 328-slot cache (SmolLM2's heads)."""
    from decoding.nn.attention import naive_attention
    from decoding.nn.decode_attention import decode_attention

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gen = torch.Generator("cuda").manual_seed(1)
    for b in (1, 3):
        q, k, v = (torch.randn(b, 3, n, 64, device="cuda", generator=gen).to(torch.bfloat16) for n in (3, 328, 328))
        valid = torch.rand(b, 328, device="cuda", generator=gen) < 0.9
        valid[:, :100] = False  # empty chunks
        if b > 1:
            valid[-1] = False  # a row without a valid key: zeros
        out = decode_attention(q, k, v, valid, **launch)
        ref = naive_attention(q.float(), k.float(), v.float(), valid[:, None, None, :], 64**-0.5)
        torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(decode_attention(q.float(), k.float(), v.float(), valid, **launch), ref,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_compiled_graphed_step_with_the_kernel_matches_sdpa() -> None:
    """The kernel inside the compiled, CUDA-graph-captured one-token step (no fallback to eager)."""
    import warnings

    from decoding import decode
    from decoding.adapters.static_cache import StaticCausalLM
    from decoding.core.fallback import FallbackWarning
    from decoding.nn.transformer import Transformer, TransformerConfig
    from decoding.processes.autoregressive import Autoregressive

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(vocab_size=1000, dim=192, n_layers=3, n_heads=6, n_kv_heads=2,
                                        max_len=512)).cuda().eval()
    ids = torch.randint(3, 1000, (4, 12), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    prompt = {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)}
    prompt["attention_mask"][0, :5] = False
    runs = []
    for backend, compile in (("sdpa", False), ("triton", False), ("triton", True)):
        lm = StaticCausalLM(net, capacity=64, backend=backend, compile=compile, cuda_graphs=True)
        # a failed compile or capture warns (FallbackWarning) and falls back: not allowed here. Other
        # warnings (inductor's TF32 advice) are recorded, not raised: raised inside compilation they
        # would themselves make the compile fail
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs.append(decode(lm, Autoregressive(greedy=True), prompt, steps=16).x)
        fallbacks = [str(w.message) for w in caught if issubclass(w.category, FallbackWarning)]
        assert not fallbacks, (backend, compile, fallbacks)
        assert lm.compile == compile and lm.cuda_graphs
    assert torch.equal(runs[1], runs[0])  # float32, eager step: the same greedy tokens
    assert (runs[2] == runs[0]).float().mean() > 0.9  # compiled: rounding may flip a rare near-tie
