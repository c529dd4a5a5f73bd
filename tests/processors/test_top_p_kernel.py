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
    assert TopP(0.9).method == "auto"


def test_auto_takes_the_kernel_for_the_measured_rows_of_cuda_logits_only(monkeypatch) -> None:  # noqa: ANN001
    """``"auto"``: the kernel for up to AUTO_MAX_ROWS rows on CUDA (measured faster there), the sort for more rows, on the CPU,
    under torch.compile, with gradients or without triton; ``"kernel"`` always, ``"sort"`` / ``"search"`` never."""
    from decoding.processors import cut_kernel

    monkeypatch.setattr(cut_kernel, "kernel_available", lambda device: True)
    one, two = torch.empty(1, 8, device="meta"), torch.empty(cut_kernel.AUTO_MAX_ROWS + 1, 8, device="meta")
    assert cut_kernel.AUTO_MAX_ROWS == 64  # measured on an H100 at batch 1 to 64
    monkeypatch.setattr(torch.Tensor, "device", property(lambda t: torch.device("cuda")))
    assert cut_kernel.use_kernel("auto", one) and cut_kernel.use_kernel("auto", one.reshape(8))
    assert cut_kernel.use_kernel("auto", torch.empty(64, 8, device="meta"))
    assert not cut_kernel.use_kernel("auto", two) and cut_kernel.use_kernel("kernel", two)
    assert not cut_kernel.use_kernel("sort", one) and not cut_kernel.use_kernel("search", one)
    assert not cut_kernel.use_kernel("auto", torch.empty(1, 8, device="meta", requires_grad=True))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not cut_kernel.use_kernel("auto", one)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    monkeypatch.setattr(cut_kernel, "kernel_available", lambda device: False)
    assert not cut_kernel.use_kernel("auto", one)
    monkeypatch.undo()
    assert not cut_kernel.use_kernel("auto", torch.zeros(1, 8))  # CPU logits


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
    from tests.nn.triton_helpers import compile_for_h100

    if ck.interpreting():
        pytest.skip("TRITON_INTERPRET=1: the jitted kernels are the interpreter's")
    jit = ck._JITS[name]
    base = dict(CHUNK=ck.CHUNK, BINS=ck.BINS, DIGIT_BITS=ck.DIGIT_BITS, COPIES=ck.COPIES)
    variants = ([{**base, "ROUND": r} for r in range(ck.ROUNDS)] if name == "round"
                else [{**base, "C_PAD": 32, "FILL": fill} for fill in (False, True)])
    for constexprs in variants:
        sig = {}
        for arg in jit.arg_names:
            if arg in constexprs:
                sig[arg] = "constexpr"
            elif arg == "x_ptr":
                sig[arg] = "*" + dtype
            elif arg == "p_ptr":
                sig[arg] = "*fp32"
            elif arg == "out_ptr":
                sig[arg] = ("*" + dtype) if constexprs.get("FILL") else "*i1"
            elif arg.endswith("_ptr"):
                sig[arg] = "*i64"
            else:  # the limit: a fixed-point mass, int64 (one compile for every p)
                sig[arg] = "i64" if arg == "limit" else "i32"
        compiled = compile_for_h100(jit, sig, constexprs)
        assert "ttir" in compiled.asm
        if name == "round" and "ttgir" in compiled.asm:
            assert "atomic_rmw" in compiled.asm["ttgir"]


@needs_triton
def test_torch_compile_sees_what_each_kernel_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside ``torch.compile`` torch reads a user kernel's Triton IR to find the tensors it writes
    (atomics included); an analysis that fails marks every argument written (copies around each
    launch). The rounds write the histograms, the select's state and the counts; the mask kernel
    only the mask."""
    from decoding.processors import cut_kernel as ck
    from decoding.processors.cut import fixed_scalar
    from tests.nn.triton_helpers import write_analysis

    identify_accessed_tensors = write_analysis(monkeypatch)
    b, v, c = 2, 49152, 49152 // ck.CHUNK
    common = dict(x_ptr=torch.empty(b, v, dtype=torch.bfloat16), p_ptr=torch.empty(b, v),
                  hist_ptr=torch.empty(b * 4 * ck.COPIES * ck.BINS, dtype=torch.long), state_ptr=torch.empty(b * 16, dtype=torch.long),
                  count_ptr=torch.empty(b * c * ck.BINS, dtype=torch.long), V=v, C=c, sx_b=v, sp_b=v,
                  limit=fixed_scalar(1 - 0.95), CHUNK=ck.CHUNK, BINS=ck.BINS, DIGIT_BITS=ck.DIGIT_BITS, COPIES=ck.COPIES)
    for r in range(ck.ROUNDS):
        accesses = identify_accessed_tensors(ck._JITS["round"], {**common, "ROUND": r}, {})
        writes = {dep.name for dep in accesses.read_writes.writes}
        want = {"hist_ptr"} | ({"state_ptr"} if r else set()) | ({"count_ptr"} if r == ck.ROUNDS - 1 else set())
        assert writes == want, (r, writes)
    for fill in (False, True):
        kwargs = {**{k: a for k, a in common.items() if k not in ("p_ptr", "sp_b")}, "so_b": v, "C_PAD": 32,
                  "out_ptr": torch.empty(b, v, dtype=torch.bfloat16 if fill else torch.bool), "FILL": fill}
        accesses = identify_accessed_tensors(ck._JITS["mask"], kwargs, {})
        assert {dep.name for dep in accesses.read_writes.writes} == {"out_ptr"}, fill


@needs_triton
def test_helpers_a_kernel_calls_go_by_their_own_names() -> None:
    """Inductor defines a user kernel's jitted helpers under their ``__name__`` (see test_fused_decode)."""
    from triton.runtime.jit import JITFunction

    from decoding.processors import cut_kernel as ck

    if ck.interpreting():
        pytest.skip("TRITON_INTERPRET=1: the jitted kernels are the interpreter's")
    called = set()
    for kernel in ck._JITS.values():
        for name in kernel.fn.__code__.co_names:
            helper = kernel.fn.__globals__.get(name)
            if isinstance(helper, JITFunction):
                assert helper.fn.__name__ == name, (kernel.fn.__name__, name, helper.fn.__name__)
                called.add(name)
    assert called == {"_step", "_order_keys", "_fixed_point"}


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["eager", "graph", "compiled"])
def test_kernel_equals_top_p_drop_on_the_gpu(mode: str) -> None:
    """On CUDA: bit for bit ``top_p_drop`` (bfloat16 and float32 logits, batch 1 and 8, SmolLM2's
    vocabulary), eagerly, replayed from a CUDA graph and inside ``torch.compile(fullgraph=True)``."""
    from decoding.processors.cut import top_p_drop
    from decoding.processors.cut_kernel import top_p_drop_kernel, top_p_filter_kernel

    if not torch.cuda.is_available() or not HAS_TRITON:
        pytest.skip("needs CUDA and triton")
    for b in (1, 8):
        for dtype in (torch.bfloat16, torch.float32):
            x = (torch.randn(b, 49152, device="cuda", generator=torch.Generator("cuda").manual_seed(b)) * 3.75).to(dtype)
            x[0, :1000] = x[0, :1000].round()  # tie groups
            for p, keep, fill in ((0.95, 1, False), (0.95, 1, True), (0.5, 5, False), (0.5, 5, True), (1.0, 1, True)):
                want = top_p_drop(x, p, keep)
                if fill:
                    want = x.masked_fill(want, float("-inf"))
                kernel = top_p_filter_kernel if fill else top_p_drop_kernel
                fn = lambda t, p=p, keep=keep, kernel=kernel: kernel(t, p, keep)  # noqa: E731
                if mode == "compiled":
                    fn = torch.compile(fn, fullgraph=True, dynamic=False)
                if mode == "graph":
                    static = x.clone()
                    fn(static)  # compile the kernels before the capture
                    torch.cuda.synchronize()
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        out = fn(static)
                    static.copy_(x)
                    graph.replay()
                    got = out.clone()
                elif mode == "compiled":
                    try:
                        got = fn(x)
                    except Exception as e:  # noqa: BLE001
                        if "xreplace" not in str(e):
                            raise
                        # inductor (torch 2.11, H100 run of 2026-12-08) fails on the mass bound passed as a
                        # 62-bit Python int ("'int' object has no attribute 'xreplace'"): TopP's "auto" keeps
                        # the kernel out of compiled code; anything else, or a wrong result, fails
                        pytest.xfail(f"inductor cannot compile the top-p kernels here: {str(e)[-200:]}")
                else:
                    got = fn(x)
                assert torch.equal(got, want), (mode, b, dtype, p, keep, fill)
