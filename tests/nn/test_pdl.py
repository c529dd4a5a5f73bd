"""Programmatic dependent launch (PDL) of the fused decode kernels, checked without a GPU.

With ``PDL`` a kernel's programs may be scheduled while the previous kernel on the stream is still
running (Triton's ``launch_pdl=True``); the kernel must then wait for it (``griddepcontrol.wait``)
before its first load or store. The kernels are compiled for an H100 (sm_90) here and their PTX is
read: the wait comes before every global memory access. The interpreter cases (the fused step with
``pdl=True`` gives exactly the logits, cache and tokens of ``pdl=False``) are in
``fused_decode_cases.py``; the ``gpu`` tests run the PDL step on the GPU.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
import torch

pytest.importorskip("triton")

from tests.nn.test_fused_decode import CONSTEXPRS, NO_DOT, masked_prompt, one_eager_step, smollm2_like  # noqa: E402
from tests.nn.triton_helpers import compile_for_h100  # noqa: E402

SPLIT = {"HKV": 3, "CHUNK": 128, "BLOCK_G": 16, "BLOCK_N": 64, "BLOCK_D": 64}  # SmolLM2's heads, 300 slots
# a global memory access in PTX: loads, stores, atomics, reductions, asynchronous copies
MEMORY = re.compile(r"\b(?:ld|st|atom|red)\.global\b|\bcp\.async\b|\bcp\.reduce\.async\b")


def _jit_and_constexprs(name: str, dot: bool) -> tuple[Any, dict[str, Any]]:
    from decoding.nn import decode_attention as da
    from decoding.nn import fused_decode as fd

    if fd.interpreting():
        pytest.skip("TRITON_INTERPRET=1: the jitted kernels are the interpreter's")
    if name == "split":  # tl.dot pads the 3 queries to 16 rows; without it, to 4
        return da._JIT, {**SPLIT, "DOT": dot, "BLOCK_G": 16 if dot else 4}
    constexprs = CONSTEXPRS[name] if dot else {**CONSTEXPRS[name], **{k: v for k, v in NO_DOT.items()
                                                                       if k in CONSTEXPRS[name]}}
    return fd._JITS[name], dict(constexprs)


def _ptx(name: str, dot: bool, pdl: bool) -> str:
    jit, constexprs = _jit_and_constexprs(name, dot)
    constexprs["PDL"] = pdl
    sig = {}
    for arg in jit.arg_names:
        if arg in constexprs:
            sig[arg] = "constexpr"
        elif arg in ("pos_ptr", "slot_ptr"):
            sig[arg] = "*i64"
        elif arg in ("o_ptr", "lse_ptr"):
            sig[arg] = "*fp32"
        elif arg == "valid_ptr":
            sig[arg] = "*i8"
        elif arg.endswith("_ptr"):
            sig[arg] = "*bf16"
        else:
            sig[arg] = "fp32" if arg == "scale" else "i32"
    compiled = compile_for_h100(jit, sig, constexprs)
    if "ptx" not in compiled.asm:
        pytest.skip("no PTX from this triton")
    return compiled.asm["ptx"]


KERNELS = [*sorted(CONSTEXPRS), "split"]


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("dot", [True, False])
def test_pdl_kernel_waits_for_its_predecessor_before_any_memory_access(name: str, dot: bool) -> None:
    """``PDL=True``: ``griddepcontrol.wait`` then ``griddepcontrol.launch_dependents``, both before the
    first global load or store of the PTX (the launch may overlap the previous kernel, no memory
    access may); ``PDL=False``: neither instruction (the kernel is the one without PDL)."""
    ptx = _ptx(name, dot, True)
    wait, trigger = ptx.find("griddepcontrol.wait"), ptx.find("griddepcontrol.launch_dependents")
    first = MEMORY.search(ptx)
    assert wait >= 0 and trigger >= 0, name
    assert first is not None, name
    assert wait < trigger < first.start(), (name, wait, trigger, first.group(0), first.start())
    assert ptx.count("griddepcontrol.wait") == 1
    # before the wait: no memory instruction of any state space (generic addressing included) but the
    # kernel's parameters
    before = [line.split()[0] for line in ptx[:wait].splitlines() if line.strip() and not line.strip().startswith("//")]
    touching = [op for op in before if re.match(r"(ld|st|atom|red|cp|prefetch)\.", op) and not op.startswith("ld.param")]
    assert not touching, (name, touching)
    off = _ptx(name, dot, False)
    assert "griddepcontrol" not in off


def test_pdl_launch_is_on_only_for_cuda_outside_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    from decoding.nn import decode_attention as da

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert da.pdl_launch(True, torch.device("cuda")) == (True, {"launch_pdl": True})
    assert da.pdl_launch(False, torch.device("cuda")) == (False, {})
    assert da.pdl_launch(True, torch.device("cpu")) == (False, {})
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the interpreter cannot run inline assembly
    assert da.pdl_launch(True, torch.device("cuda")) == (False, {})


def test_pdl_needs_the_fused_step_and_no_compile() -> None:
    from decoding.adapters.static_cache import StaticCausalLM
    from decoding.nn.transformer import Transformer, TransformerConfig

    net = Transformer(TransformerConfig(vocab_size=50, dim=32, n_layers=1, n_heads=4, n_kv_heads=2, max_len=64))
    with pytest.raises(ValueError, match="pdl=True applies to the fused step"):
        StaticCausalLM(net, pdl=True)
    with pytest.raises(ValueError, match="inductor drops"):
        StaticCausalLM(net, fused=True, pdl=True, compile=True)


def test_inductor_drops_a_user_kernels_launch_pdl() -> None:
    """Why ``pdl=True`` runs the step uncompiled: inductor rebuilds a user-defined Triton kernel's
    compile options from its own ``triton_meta`` (``launch_pdl`` read from there, never from the
    call's keyword arguments), and keeps only the kwargs that name kernel parameters. If a torch
    release starts forwarding it, this fails and the compiled PDL step can be reconsidered."""
    import inspect

    try:
        from torch._inductor.codegen import wrapper
        from torch._inductor.runtime import triton_heuristics
    except ImportError as e:
        pytest.skip(f"no inductor: {e}")
    codegen = getattr(wrapper, "PythonWrapperCodegen", None) or getattr(wrapper, "WrapperCodeGen", None)
    define = getattr(codegen, "define_user_defined_triton_kernel", None)
    if define is None:
        pytest.skip("this torch's wrapper codegen has no define_user_defined_triton_kernel")
    assert "launch_pdl" not in inspect.getsource(define)  # not in the user kernel's triton_meta
    heuristics = inspect.getsource(triton_heuristics)
    if "launch_pdl" in heuristics:  # torch with PDL for its own kernels: read from the kernel's meta only
        assert 'compile_meta.get("launch_pdl", False)' in heuristics


def _run_pdl_and_plain(cuda_graphs: bool) -> list[torch.Tensor]:
    from decoding import decode
    from decoding.adapters.static_cache import StaticCausalLM
    from decoding.core.fallback import FallbackWarning
    from decoding.processes.autoregressive import Autoregressive
    from decoding.processors import standard_processors

    net = smollm2_like(torch.float32, layers=2)
    procs = standard_processors(temperature=0.8, top_p=0.95)
    out = []
    for b in (1, 3):
        prompt = masked_prompt(b, net.cfg.vocab_size)
        for pdl in (False, True):
            lm = StaticCausalLM(net, capacity=96, compile=False, cuda_graphs=cuda_graphs, fused=True, pdl=pdl)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out.append(decode(lm, Autoregressive(), prompt, steps=32, processors=procs, seed=3).x)
            fallbacks = [str(w.message) for w in caught if issubclass(w.category, FallbackWarning)]
            assert not fallbacks, (b, pdl, cuda_graphs, fallbacks)
            assert lm.pdl == pdl and not lm.compile and lm.cuda_graphs == cuda_graphs
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_pdl_engine_gives_the_same_float32_tokens_on_the_gpu(cuda_graphs: bool) -> None:
    """float32, sampling at one seed, batches 1 and 3: the fused engine with PDL gives exactly the tokens
    of the fused engine without it (the same kernels and arithmetic; only the launches overlap), eager and
    replayed from a CUDA graph; and the kernels were compiled and launched with ``launch_pdl``."""
    from decoding.nn import decode_attention as da
    from decoding.nn import fused_decode as fd

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("needs a Hopper (or later) GPU")
    out = _run_pdl_and_plain(cuda_graphs)
    for plain, pdl in zip(out[0::2], out[1::2], strict=True):
        assert torch.equal(plain, pdl)
    for jit in [*fd._JITS.values(), da._JIT]:
        compiled = [k for cache in jit.device_caches.values() for k in cache[0].values()]
        assert any(getattr(k.metadata, "launch_pdl", False) for k in compiled), jit.fn.__name__
        assert any(not getattr(k.metadata, "launch_pdl", True) for k in compiled), jit.fn.__name__


@pytest.mark.gpu
def test_pdl_step_logits_equal_the_plain_step_in_bfloat16_on_the_gpu() -> None:
    """bf16, SmolLM2-135M's layer sizes: one eager step's logits and cache writes, bit for bit."""
    from decoding.adapters.static_cache import StaticCausalLM

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("needs a Hopper (or later) GPU")
    net = smollm2_like(torch.bfloat16)
    out = []
    for pdl in (False, True):
        out.append(one_eager_step(StaticCausalLM(net, capacity=64, compile=False, cuda_graphs=False, fused=True,
                                                 pdl=pdl)))
    (ref, ref_kv), (got, got_kv) = out
    assert torch.equal(got, ref)
    for a, b in zip(got_kv, ref_kv, strict=True):
        assert torch.equal(a, b)
