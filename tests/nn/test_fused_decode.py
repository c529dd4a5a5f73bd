"""The fused small-batch decode kernels (:mod:`decoding.nn.fused_decode`), checked without a GPU.

The cases live in ``fused_decode_cases.py`` and run in a fresh Python process with
``TRITON_INTERPRET=1`` (see there). The kernels are also compiled for an H100 (sm_90) here, which
Triton's front end and bundled CUDA tools do without a GPU. The ``gpu`` tests run the compiled
kernels in the compiled, CUDA-graph-captured step.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

from tests.nn.triton_helpers import compile_for_h100, run_cases_under_interpreter, write_analysis  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# SmolLM2-135M's sizes: dim 576, 9 query heads and 3 key/value heads of 64, MLP hidden 1536
CONSTEXPRS = {
    "norm_qkv_rope": {"K": 576, "HQ": 9, "HKV": 3, "D": 64, "EPS": 1e-5, "BLOCK_B": 16, "BLOCK_R": 16, "BLOCK_K": 64,
                      "UPCAST": False, "DOT": True, "PDL": False},
    "gemv_residual": {"K": 1536, "BLOCK_B": 16, "BLOCK_N": 16, "BLOCK_K": 64, "UPCAST": False, "DOT": True, "PDL": False},
    "combine_gemv_residual": {"K": 576, "G": 3, "D": 64, "C": 5, "C_PAD": 8, "BLOCK_B": 16, "BLOCK_N": 16, "BLOCK_K": 64,
                              "UPCAST": False, "DOT": True, "PDL": False},
    "norm_gate_up": {"K": 576, "EPS": 1e-5, "BLOCK_B": 16, "BLOCK_N": 16, "BLOCK_K": 64, "UPCAST": False, "DOT": True,
                     "PDL": False},
}
# products on CUDA cores: a batch of one unpadded, 4 output rows a program, all inputs in one or two steps
NO_DOT = {"BLOCK_B": 1, "BLOCK_R": 4, "BLOCK_N": 4, "BLOCK_K": 1024, "DOT": False}


def test_kernel_cases_under_the_interpreter() -> None:
    run_cases_under_interpreter("tests/nn/fused_decode_cases.py", timeout=900)


@pytest.mark.parametrize("name", sorted(CONSTEXPRS))
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("dot", [True, False])
def test_kernel_compiles_for_an_h100(name: str, dtype: str, dot: bool) -> None:
    """Each kernel through Triton's compiler for sm_90, with the argument types a compiled step passes.

    Sizes and the norm's epsilon are ``tl.constexpr`` (inductor would pass a runtime Python float as
    fp64: see ``test_decode_attention.py``); the remaining scalars are ints. The rotary tables come
    in the model's dtype (``Transformer.to(dtype)`` converts its buffers). In bf16 the products run
    on tensor cores (``mma`` in the PTX).
    """
    from decoding.nn import fused_decode as fd

    if fd.interpreting():
        pytest.skip("TRITON_INTERPRET=1: the jitted kernels are the interpreter's")
    jit = fd._JITS[name]
    constexprs = CONSTEXPRS[name] if dot else {**CONSTEXPRS[name], **{k: v for k, v in NO_DOT.items()
                                                                       if k in CONSTEXPRS[name]}}
    names = jit.arg_names
    assert set(constexprs) <= set(names)
    sig = {}
    for arg in names:
        if arg in constexprs:
            sig[arg] = "constexpr"
        elif arg in ("pos_ptr", "slot_ptr"):
            sig[arg] = "*i64"
        elif arg in ("o_ptr", "lse_ptr"):  # the split attention's float32 partial results
            sig[arg] = "*fp32"
        elif arg.endswith("_ptr"):
            sig[arg] = "*" + dtype
        else:
            sig[arg] = "i32"
    compiled = compile_for_h100(jit, sig, constexprs)
    assert "ttir" in compiled.asm
    if dtype == "bf16" and "ptx" in compiled.asm:
        assert ("mma" in compiled.asm["ptx"]) == dot


def test_torch_compile_sees_what_each_kernel_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside ``torch.compile`` a user kernel's arguments are functionalized: torch reads the kernel's
    Triton IR to find the tensors it stores to, and an analysis that fails marks every argument
    as written (inductor would then copy weights and caches around each launch). Here that analysis
    runs on each kernel with a compiled step's arguments: only the outputs, and for the first
    kernel the cache, are written.
    """
    from decoding.nn import fused_decode as fd

    identify_accessed_tensors = write_analysis(monkeypatch)
    bf = torch.bfloat16

    def empty(*shape: int, dtype: torch.dtype = bf) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype)

    b, dim, s, d = 1, 576, 300, 64
    calls = {
        "norm_qkv_rope": dict(
            x_ptr=empty(b, dim), nw_ptr=empty(dim), w_ptr=empty(960, dim), cos_ptr=empty(8, 32, dtype=torch.float32),
            sin_ptr=empty(8, 32, dtype=torch.float32), pos_ptr=empty(b, dtype=torch.long),
            slot_ptr=empty(1, dtype=torch.long), q_ptr=empty(b, 576), kv_ptr=empty(2, b, 3, s, d),
            B=b, sx_b=dim, sw_n=dim, s_rope=32, sq_b=576, skv_w=b * 3 * s * d, skv_b=3 * s * d, skv_h=s * d, skv_s=d),
        "gemv_residual": dict(a_ptr=empty(b, 1536), w_ptr=empty(dim, 1536), res_ptr=empty(b, dim), out_ptr=empty(b, dim),
                              B=b, N=dim, sa_b=1536, sw_n=1536, sr_b=dim, so_b=dim),
        "combine_gemv_residual": dict(
            o_ptr=empty(b, 3, 5, 3, d, dtype=torch.float32), lse_ptr=empty(b, 3, 5, 3, dtype=torch.float32),
            w_ptr=empty(dim, 576), res_ptr=empty(b, dim), out_ptr=empty(b, dim), B=b, N=dim, so_b=45 * d, so_h=15 * d,
            so_c=3 * d, so_g=d, sl_b=45, sl_h=15, sl_c=3, sw_n=576, sr_b=dim, sy_b=dim),
        "norm_gate_up": dict(x_ptr=empty(b, dim), nw_ptr=empty(dim), w_ptr=empty(3072, dim), out_ptr=empty(b, 1536),
                             B=b, HIDDEN=1536, sx_b=dim, sw_n=dim, so_b=1536),
    }
    written = {"norm_qkv_rope": {"q_ptr", "kv_ptr"}, "gemv_residual": {"out_ptr"}, "combine_gemv_residual": {"out_ptr"},
               "norm_gate_up": {"out_ptr"}}
    assert set(calls) == set(fd._JITS)
    for name, kwargs in calls.items():
        kwargs = {**kwargs, **CONSTEXPRS[name]}
        accesses = identify_accessed_tensors(fd._JITS[name], kwargs, {})
        writes = {dep.name for dep in accesses.read_writes.writes if isinstance(kwargs.get(dep.name), torch.Tensor)}
        assert writes == written[name], (name, writes)



def test_helpers_a_kernel_calls_go_by_their_own_names() -> None:
    """Inside ``torch.compile`` inductor writes a user kernel's source into its own module, with the
    source of every jitted helper the kernel loads from its globals; a helper's source defines it
    under its ``__name__``. A kernel that calls a helper under another global name (``h_jit =
    triton.jit(h)``) compiles here and in eager mode but fails in the compiled step with a
    ``NameError`` (the fused kernels on an H100, 2026-12-07 12:31 UTC).
    """
    from triton.runtime.jit import JITFunction

    from decoding.nn import fused_decode as fd

    if fd.interpreting():
        pytest.skip("TRITON_INTERPRET=1: the jitted kernels are the interpreter's")
    seen, todo, called = set(), list(fd._JITS.values()), 0
    while todo:
        kernel = todo.pop()
        for name in kernel.fn.__code__.co_names:
            helper = kernel.fn.__globals__.get(name)
            if isinstance(helper, JITFunction) and name not in seen:
                seen.add(name)
                called += 1
                assert helper.fn.__name__ == name, (kernel.fn.__name__, name, helper.fn.__name__)
                todo.append(helper)
    assert called >= 1  # the qkv and gate_up kernels share one helper


def smollm2_like(dtype: torch.dtype, layers: int = 4):
    from decoding.adapters.llama import SMOLLM2_135M
    from decoding.nn.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(**{**SMOLLM2_135M, "n_layers": layers}, max_len=512)
    return Transformer(cfg).to("cuda", dtype).eval()


def masked_prompt(b: int, vocab: int) -> dict[str, torch.Tensor]:
    """``b`` seeded random 16-token CUDA prompts, row 0 left-padded by 3."""
    ids = torch.randint(3, vocab, (b, 16), device="cuda", generator=torch.Generator("cuda").manual_seed(b))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, :3] = False
    return {"input_ids": ids, "attention_mask": mask}


def one_eager_step(lm) -> tuple[torch.Tensor, list[torch.Tensor]]:  # noqa: ANN001
    """One eager decode step of 4 rows over a 40-slot session filled with seeded random keys and values
    (slots 0-29 valid, row 0's first 7 masked, the step's token at slot 29): the logits and every layer's
    ``(2, B, Hkv, S, D)`` cache after it, both copied."""
    sess = lm.session(4, 40)
    gen = torch.Generator("cuda").manual_seed(0)
    for t in sess.kv:
        t.copy_(torch.randn(t.shape, device="cuda", generator=gen))
    sess.valid[:, :30] = True
    sess.valid[0, :7] = False
    sess.slot.fill_(29)
    sess.tok.copy_(torch.arange(4, device="cuda")[:, None] * 1000 + 17)
    with torch.no_grad():
        logits = lm._decode_step(sess).clone()
    torch.cuda.synchronize()
    return logits, [t.clone() for t in sess.kv]


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True])
def test_fused_engine_gives_the_unfused_tokens_on_the_gpu(compile: bool) -> None:
    """float32, CUDA graphs, sampling at one seed: the fused engine's tokens are the unfused ``triton`` engine's."""
    from decoding import decode
    from decoding.adapters.static_cache import StaticCausalLM
    from decoding.core.fallback import FallbackWarning
    from decoding.processes.autoregressive import Autoregressive
    from decoding.processors import standard_processors

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    net = smollm2_like(torch.float32, layers=2)  # two layers: four compiles of the step, kept short
    procs = standard_processors(temperature=0.8, top_p=0.95)
    runs = []
    for b in (1, 3):
        prompt = masked_prompt(b, net.cfg.vocab_size)
        out = []
        for fused in (False, True):
            lm = StaticCausalLM(net, capacity=96, backend="triton", compile=compile, cuda_graphs=True, fused=fused)
            with warnings.catch_warnings(record=True) as caught:  # recorded, not raised (see test_decode_attention)
                warnings.simplefilter("always")
                out.append(decode(lm, Autoregressive(), prompt, steps=32, processors=procs, seed=3).x)
            fallbacks = [str(w.message) for w in caught if issubclass(w.category, FallbackWarning)]
            assert not fallbacks, (b, fused, compile, fallbacks)
            assert lm.compile == compile and lm.cuda_graphs
        runs.append(out)
    for plain, fused in runs:
        if compile:  # inductor may reorder float32 sums differently in the two steps: a rare near-tie may flip
            assert (plain == fused).float().mean() > 0.9
        else:
            assert torch.equal(plain, fused)


@pytest.mark.gpu
def test_fused_step_logits_close_in_bfloat16_on_the_gpu() -> None:
    """bf16, SmolLM2-135M's layer sizes: one step's logits, fused and unfused, and the cache entries written."""
    from decoding.adapters.static_cache import StaticCausalLM

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    net = smollm2_like(torch.bfloat16)
    out = []
    for fused in (False, True):
        logits, kv = one_eager_step(StaticCausalLM(net, capacity=64, backend="triton", compile=False,
                                                   cuda_graphs=False, fused=fused))
        out.append((logits.float(), [t[:, :, :, 29].float() for t in kv]))
    (ref, ref_kv), (got, got_kv) = out
    scale = ref.abs().max()
    assert (got - ref).abs().max() <= 0.03 * scale, float((got - ref).abs().max() / scale)
    for a, b in zip(got_kv, ref_kv, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
def test_compiled_fused_step_launches_the_kernels_once_a_layer_and_copies_no_cache() -> None:
    """The compiled fused step is one graph; per layer it launches each of the five kernels once, and
    inductor writes the cache in place (no copy of a cache buffer around the kernel that writes it:
    see ``test_torch_compile_sees_what_each_kernel_writes``)."""
    from tests.text.test_step_fusion import LAYERS, compiled_step, generated_kernels

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    eager, out, codes, sess = compiled_step("cuda", backend="triton", fused=True)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    assert len(codes) == 1, f"{len(codes)} compiled modules for one step"
    kernels = generated_kernels(codes[0])
    print(f"{len(kernels)} kernel launches:", *kernels, sep="\n")  # in full on a failure
    for part in ("_norm_qkv_rope", "_split_kernel", "_combine_gemv_residual", "_gemv_residual", "_norm_gate_up"):
        assert sum(k.startswith(part) for k in kernels) == LAYERS, part
    cache = str(tuple(sess.kv[0].shape))  # a new buffer of the cache's shape would be a copy of it
    assert not re.search(r"empty_strided\w*\(" + re.escape(cache), codes[0]), f"a {cache} buffer: the cache is copied"


def test_tuning_sweep_checks_every_configuration_against_the_torch_ops(tmp_path: Path) -> None:
    """``benchmarks/fused_decode_tune.py`` at toy size under the interpreter: every kernel and
    configuration (CUDA-core products at small blocks, ``tl.dot`` at 16 rows) agrees with the unfused
    torch ops it replaces (the peer the sweep times), and its ``"best"`` list is a table the kernels
    read through ``DECODING_FUSED_CONFIGS``."""
    out = tmp_path / "tune.json"
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks/fused_decode_tune.py"), "--tiny", "--batch", "1", "3",
                          "--blocks", "1", "4", "--block-k", "16", "64", "--dot-blocks", "16", "--dot-block-k", "32",
                          "--warps", "4", "--reps", "1", "--attn-block-n", "16", "--attn-splits", "1", "3",
                          "--attn-warps", "2", "--slots", "40", "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summaries = re.findall(r"(\d+) configurations timed, (\d+) failed", run.stdout)
    # the split attention: 16-key blocks, chunks of 48 and 16 keys, tl.dot and CUDA cores
    assert summaries == ([("5", "0")] * 5 + [("4", "0")]) * 2, run.stdout[-3000:]
    best = json.loads(out.read_text())["best"]
    assert len(best) == 12 and {(r["kernel"], r["K"], r["N"]) for r in best} == {
        ("norm_qkv_rotary_cache", 48, 128), ("combine_gemv_residual", 64, 48), ("norm_gate_up_silu", 48, 80),
        ("gemv_residual", 40, 48), ("gemv_residual", 64, 48), ("decode_attention", 40, 64)}
    code = ("from decoding.nn import fused_decode as fd; import json; "
            "print(json.dumps([fd.launch_config('gemv_residual', b, 40, 48) for b in (1, 2, 3, 8)]))")
    env = {**os.environ, "DECODING_FUSED_CONFIGS": str(out)}
    got = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    down = {r["batch"]: r for r in best if (r["kernel"], r["K"]) == ("gemv_residual", 40)}
    want = [{"block": r["block"], "block_k": r["block_k"], "num_warps": r["warps"], "dot": r["dot"]}
            for r in (down[1], down[3], down[3])]  # the smallest tuned batch >= b
    untuned = {"block": 16, "block_k": None, "num_warps": None, "dot": True}  # none >= 8: not tuned
    assert json.loads(got.stdout) == [*want, untuned]
    env["DECODING_FUSED_CONFIGS"] = str(tmp_path / "missing.json")
    missing = subprocess.run([sys.executable, "-c", "import decoding.nn.fused_decode"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "DECODING_FUSED_CONFIGS" in missing.stderr and "no such file" in missing.stderr


def test_launch_config_takes_what_the_caller_gives_and_the_table_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    from decoding.nn import fused_decode as fd

    monkeypatch.setattr(fd, "TUNED", [
        {"kernel": "gemv_residual", "K": 64, "N": 32, "batch": 1, "block": 4, "block_k": 64, "warps": 2, "dot": False},
        {"kernel": "gemv_residual", "K": 64, "N": 32, "batch": 8, "block": 16, "block_k": 32, "warps": 4, "dot": True}])
    assert fd.launch_config("gemv_residual", 1, 64, 32) == {"block": 4, "block_k": 64, "num_warps": 2, "dot": False}
    assert fd.launch_config("gemv_residual", 2, 64, 32)["block_k"] == 32  # the smallest tuned batch >= 2
    untuned = {"block": 16, "block_k": None, "num_warps": None, "dot": True}
    assert fd.launch_config("gemv_residual", 9, 64, 32) == untuned  # above every tuned batch
    assert fd.launch_config("gemv_residual", 1, 64, 33) == untuned
    assert fd.launch_config("norm_gate_up_silu", 1, 64, 32) == untuned
    assert fd._resolve("gemv_residual", 1, 64, 32, None, None, None, None) == (4, 64, {"num_warps": 2}, False, 1)
    assert fd._resolve("gemv_residual", 3, 64, 32, None, None, None, None) == (16, 32, {"num_warps": 4}, True, 16)
    assert fd._resolve("gemv_residual", 3, 64, 32, 2, None, 8, None) == (2, 32, {"num_warps": 8}, False, 4)
    assert fd._resolve("gemv_residual", 3, 64, 33, None, 128, None, False) == (16, 128, {}, False, 4)
    with pytest.raises(ValueError, match="dot=True needs at least 16"):
        fd._resolve("gemv_residual", 1, 64, 32, 8, None, None, True)
    with pytest.raises(ValueError, match="power of two"):
        fd._resolve("gemv_residual", 1, 64, 32, 12, None, None, False)
    with pytest.raises(ValueError, match="block_k must be a power of two"):
        fd._resolve("gemv_residual", 1, 64, 32, 4, 48, None, False)


def test_the_shipped_table_covers_smollm2s_layer_at_batch_1() -> None:
    """``decoding/nn/fused_decode_tuned.json`` (measured on an H100) is read at import and gives every
    kernel of SmolLM2-135M's layer its measured launch at batch 1; larger batches stay untuned."""
    from decoding.nn import fused_decode as fd

    if os.environ.get("DECODING_FUSED_CONFIGS"):
        pytest.skip("DECODING_FUSED_CONFIGS replaces the shipped table in this process")
    shipped = json.loads((ROOT / "decoding/nn/fused_decode_tuned.json").read_text())["best"]
    assert fd.TUNED == shipped
    uses = {("norm_qkv_rotary_cache", 576, 960), ("combine_gemv_residual", 576, 576), ("norm_gate_up_silu", 576, 3072),
            ("gemv_residual", 1536, 576), ("gemv_residual", 576, 576)}
    assert {(r["kernel"], r["K"], r["N"]) for r in shipped} == uses
    for kernel, k, n in uses:
        row = next(r for r in shipped if (r["kernel"], r["K"], r["N"]) == (kernel, k, n))
        assert fd.launch_config(kernel, 1, k, n) == {"block": row["block"], "block_k": row["block_k"],
                                                     "num_warps": row["warps"], "dot": row["dot"]}
        assert fd.launch_config(kernel, 2, k, n)["dot"]  # untuned above batch 1
