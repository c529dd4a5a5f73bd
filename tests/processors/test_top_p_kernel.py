"""The Triton top-p cut (``TopP(method="kernel")``, :mod:`decoding.processors.cut_kernel`), checked without a GPU.

The cases live in ``top_p_kernel_cases.py`` and run in a fresh Python process with
``TRITON_INTERPRET=1`` (bit for bit against :func:`decoding.processors.cut.top_p_drop`). The kernels
are also compiled for an H100 (sm_90), which Triton's front end and bundled CUDA tools do without a
GPU. Without triton only the method checks run.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from decoding.processors import TopP, Typical

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def test_kernel_is_a_top_p_method_only() -> None:
    with pytest.raises(ValueError, match="'kernel'"):
        Typical(0.9, method="kernel")
    with pytest.raises(ValueError, match="got 'kernels'"):
        TopP(0.9, method="kernels")
    assert TopP(0.9).method == "auto"  # "auto" never picks the kernel (see cut.use_search)


@pytest.mark.skipif(HAS_TRITON, reason="triton is installed")
def test_kernel_without_triton_says_so() -> None:
    with pytest.raises(RuntimeError, match="needs triton"):
        TopP(0.9, method="kernel")


@needs_triton
def test_kernel_on_cpu_logits_says_so() -> None:
    from decoding.nn.decode_attention import interpreting

    if interpreting():
        pytest.skip("TRITON_INTERPRET=1: CPU logits are the interpreter's")
    with pytest.raises(ValueError, match="CUDA tensors"):
        TopP(0.9, method="kernel")(torch.randn(2, 50))


@needs_triton
def test_kernel_cases_under_the_interpreter() -> None:
    from tests.nn.triton_helpers import run_cases_under_interpreter

    run_cases_under_interpreter("tests/processors/top_p_kernel_cases.py", timeout=900)


@needs_triton
@pytest.mark.parametrize("name", ["round", "mask"])
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_kernel_compiles_for_an_h100(name: str, dtype: str) -> None:
    """Each kernel through Triton's compiler for sm_90 with the argument types a call passes
    (SmolLM2's vocabulary: 49,152 in 24 chunks; every round of the select)."""
    from decoding.processors import cut_kernel as ck
    from decoding.processors.cut import fixed_scalar
    from tests.nn.triton_helpers import compile_for_h100

    if ck.interpreting():
        pytest.skip("TRITON_INTERPRET=1: the jitted kernels are the interpreter's")
    jit = ck._JITS[name]
    base = dict(LIMIT=fixed_scalar(1 - 0.95), CHUNK=ck.CHUNK, BINS=ck.BINS, DIGIT_BITS=ck.DIGIT_BITS)
    variants = [{**base, "ROUND": r} for r in range(ck.ROUNDS)] if name == "round" else [{**base, "C_PAD": 32}]
    for constexprs in variants:
        sig = {}
        for arg in jit.arg_names:
            if arg in constexprs:
                sig[arg] = "constexpr"
            elif arg == "x_ptr":
                sig[arg] = "*" + dtype
            elif arg == "p_ptr":
                sig[arg] = "*fp32"
            elif arg == "drop_ptr":
                sig[arg] = "*i8"
            elif arg.endswith("_ptr"):
                sig[arg] = "*i64"
            else:
                sig[arg] = "i32"
        compiled = compile_for_h100(jit, sig, constexprs)
        assert "ttir" in compiled.asm
        if name == "round" and "ttgir" in compiled.asm:
            assert "atomic_rmw" in compiled.asm["ttgir"]
