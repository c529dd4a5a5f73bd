"""Cases for the fused small-batch decode kernels under Triton's interpreter on CPU.

Not collected by itself: ``test_fused_decode.py`` runs this file in a fresh process with
``TRITON_INTERPRET=1`` set before triton is imported (as ``triton_interpret_cases.py``).

Each kernel is checked in float32 against the torch modules it replaces (RMSNorm, ``F.linear``,
:func:`decoding.nn.transformer.apply_rotary`, the static cache's indexed write, SiLU): sizes that
are not multiples of the block sizes, batches 1, 3 and 8, grouped and ungrouped heads. Then the
whole fused step against :func:`decoding.adapters.static_cache.static_forward`'s unfused step on
the tiny transformers Llama of the text tests (logits and the cache), and a greedy decode.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run through test_fused_decode.py (needs TRITON_INTERPRET=1 before triton is imported)",
                allow_module_level=True)

from decoding.adapters.static_cache import FUSED_MAX_BATCH, StaticCausalLM, static_forward  # noqa: E402
from decoding.nn import fused_decode as fd  # noqa: E402
from decoding.nn.decode_attention import combine_splits  # noqa: E402
from decoding.nn.transformer import RMSNorm, Transformer, apply_rotary, rotary_tables  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


def norm_of(dim: int, gen: torch.Generator) -> RMSNorm:
    norm = RMSNorm(dim, 1e-5)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(dim, generator=gen))
    return norm


@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize(("dim", "hq", "hkv", "d"), [(40, 6, 2, 12), (72, 3, 3, 64), (100, 8, 2, 24)])
def test_norm_qkv_rotary_cache_equals_torch(b: int, dim: int, hq: int, hkv: int, d: int) -> None:
    gen = torch.Generator().manual_seed(b * dim + hq)
    s = 21
    x = torch.randn(b, dim, generator=gen)
    norm = norm_of(dim, gen)
    w = 0.2 * torch.randn((hq + 2 * hkv) * d, dim, generator=gen)
    cos, sin = rotary_tables(64, d, 10000.0)
    pos = torch.randint(0, 64, (b,), generator=gen)
    kv = torch.randn(2, b, hkv, s, d, generator=gen)
    slot = torch.tensor([s - 3])
    ref_kv = kv.clone()
    with torch.no_grad():
        q = fd.norm_qkv_rotary_cache(x, norm.weight, w, cos, sin, pos, kv, slot, hq, norm.eps)
        t = F.linear(norm(x), w).view(b, 1, hq + 2 * hkv, d)  # static_forward's unfused ops
        c, sn = cos[pos[:, None]][:, :, None], sin[pos[:, None]][:, :, None]
        qk = apply_rotary(t[:, :, : hq + hkv], c, sn)
        ref_kv[:, :, :, slot] = torch.stack([qk[:, :, hq:], t[:, :, hq + hkv :]]).transpose(2, 3)
        ref_q = qk[:, :, :hq].transpose(1, 2).reshape(b, hkv, hq // hkv, d)
    assert q.shape == (b, hkv, hq // hkv, d)
    torch.testing.assert_close(q, ref_q, **TOL)
    torch.testing.assert_close(kv, ref_kv, **TOL)
    others = torch.ones(s, dtype=torch.bool)
    others[slot] = False
    assert torch.equal(kv[..., others, :], ref_kv[..., others, :])  # no other slot touched


@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize(("k", "n", "block_n"), [(100, 70, 16), (576, 40, 32), (16, 17, 16)])
def test_gemv_residual_equals_torch(b: int, k: int, n: int, block_n: int) -> None:
    gen = torch.Generator().manual_seed(b + k + n)
    a, w, res = torch.randn(b, k, generator=gen), torch.randn(n, k, generator=gen), torch.randn(b, n, generator=gen)
    out = fd.gemv_residual(a, w, res, block_n=block_n)
    torch.testing.assert_close(out, res + F.linear(a, w), **TOL)


@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize(("hkv", "c", "g", "d", "n"), [(3, 5, 3, 64, 40), (2, 1, 4, 12, 30), (1, 3, 1, 20, 17)])
def test_combine_gemv_residual_equals_torch(b: int, hkv: int, c: int, g: int, d: int, n: int) -> None:
    """The split attention's chunks combined (as combine_splits) in the output projection's prologue."""
    gen = torch.Generator().manual_seed(b + c + d)
    out, lse = torch.randn(b, hkv, c, g, d, generator=gen), 3 * torch.randn(b, hkv, c, g, generator=gen)
    lse[0, 0, 0] = float("-inf")  # a chunk without a valid key
    if b > 2:
        lse[2] = float("-inf")  # a row without any: attention gives zeros
    w, res = torch.randn(n, hkv * g * d, generator=gen), torch.randn(b, n, generator=gen)
    y = fd.combine_gemv_residual(out, lse, w, res)
    torch.testing.assert_close(y, res + F.linear(combine_splits(out, lse).reshape(b, -1), w), **TOL)
    if b > 2:
        assert torch.equal(y[2], res[2])


@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize(("dim", "hidden"), [(40, 50), (96, 160), (33, 16)])
def test_norm_gate_up_silu_equals_torch(b: int, dim: int, hidden: int) -> None:
    gen = torch.Generator().manual_seed(b + dim + hidden)
    x = torch.randn(b, dim, generator=gen)
    norm = norm_of(dim, gen)
    w = 0.3 * torch.randn(2 * hidden, dim, generator=gen)
    with torch.no_grad():
        out = fd.norm_gate_up_silu(x, norm.weight, w, norm.eps)
        g, u = F.linear(norm(x), w).chunk(2, dim=-1)
        torch.testing.assert_close(out, F.silu(g) * u, **TOL)


NO_DOT = [{"block": 1, "block_k": 128, "dot": False}, {"block": 4, "block_k": 16, "dot": False},
          {"block": 32, "block_k": 32, "dot": False}]


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("cfg", NO_DOT)
def test_products_on_cuda_cores_equal_torch(b: int, cfg: dict) -> None:
    """``dot=False`` (no ``tl.dot``: the batch unpadded, any power-of-two block of output rows), each
    kernel against the torch ops, at sizes that are not multiples of the blocks."""
    gen = torch.Generator().manual_seed(10 * b + cfg["block"])
    blk, bk, dot = cfg["block"], cfg["block_k"], cfg["dot"]
    dim, hq, hkv, d, hidden = 72, 6, 2, 12, 50
    x = torch.randn(b, dim, generator=gen)
    norm = norm_of(dim, gen)
    w = 0.2 * torch.randn((hq + 2 * hkv) * d, dim, generator=gen)
    cos, sin = rotary_tables(64, d, 10000.0)
    pos = torch.randint(0, 64, (b,), generator=gen)
    kv, slot = torch.zeros(2, b, hkv, 9, d), torch.tensor([4])
    with torch.no_grad():
        q = fd.norm_qkv_rotary_cache(x, norm.weight, w, cos, sin, pos, kv, slot, hq, norm.eps, block_r=blk,
                                     block_k=bk, dot=dot)
        t = F.linear(norm(x), w).view(b, 1, hq + 2 * hkv, d)
        qk = apply_rotary(t[:, :, : hq + hkv], cos[pos[:, None]][:, :, None], sin[pos[:, None]][:, :, None])
        torch.testing.assert_close(q, qk[:, :, :hq].transpose(1, 2).reshape(b, hkv, hq // hkv, d), **TOL)
        torch.testing.assert_close(kv[0, :, :, 4], qk[:, 0, hq:], **TOL)
        torch.testing.assert_close(kv[1, :, :, 4], t[:, 0, hq + hkv :], **TOL)
        wgu = 0.3 * torch.randn(2 * hidden, dim, generator=gen)
        g, u = F.linear(norm(x), wgu).chunk(2, dim=-1)
        torch.testing.assert_close(fd.norm_gate_up_silu(x, norm.weight, wgu, norm.eps, block_n=blk, block_k=bk, dot=dot),
                                   F.silu(g) * u, **TOL)
    a, wd, res = torch.randn(b, hidden, generator=gen), torch.randn(dim, hidden, generator=gen), torch.randn(b, dim,
                                                                                                         generator=gen)
    torch.testing.assert_close(fd.gemv_residual(a, wd, res, block_n=blk, block_k=bk, dot=dot), res + F.linear(a, wd),
                               **TOL)
    out, lse = torch.randn(b, hkv, 3, hq // hkv, d, generator=gen), torch.randn(b, hkv, 3, hq // hkv, generator=gen)
    lse[0, 1, 2] = float("-inf")
    wo = torch.randn(dim, hq * d, generator=gen)
    torch.testing.assert_close(fd.combine_gemv_residual(out, lse, wo, res, block_n=blk, block_k=bk, dot=dot),
                               res + F.linear(combine_splits(out, lse).reshape(b, -1), wo), **TOL)


def test_bfloat16_weights_stay_close_to_torch() -> None:
    """Weights and activations in bfloat16 (the GPU dtype): the kernels run and stay close.

    Loosely: Triton 3.6's interpreter casts float32 to bfloat16 by truncation (1 + 2**-8 + 2**-10
    becomes 1.0, not 1.0078125 as on a GPU), and the kernels round to bfloat16 at each step the
    torch modules do, so the errors of several roundings add up (about 4 % measured). The GPU
    rounds to nearest: the ``gpu`` test holds the compiled kernels to the unfused step.
    """
    gen = torch.Generator().manual_seed(0)
    b, dim, hidden = 2, 64, 96
    x = torch.randn(b, dim, generator=gen).bfloat16()
    norm = norm_of(dim, gen).bfloat16()
    w = (0.2 * torch.randn(2 * hidden, dim, generator=gen)).bfloat16()
    with torch.no_grad():
        out = fd.norm_gate_up_silu(x, norm.weight, w, norm.eps)
        g, u = F.linear(norm(x), w).chunk(2, dim=-1)
        ref = F.silu(g) * u
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=6e-2, atol=6e-2)
    a, wd = ref, (0.2 * torch.randn(dim, hidden, generator=gen)).bfloat16()
    torch.testing.assert_close(fd.gemv_residual(a, wd, x).float(), (x + F.linear(a, wd)).float(), rtol=6e-2, atol=6e-2)
    hq, hkv, d = 4, 2, 16  # rotary tables in bf16 too, as Transformer.to(torch.bfloat16) leaves them
    wqkv = (0.2 * torch.randn((hq + 2 * hkv) * d, dim, generator=gen)).bfloat16()
    cos, sin = (t.bfloat16() for t in rotary_tables(32, d, 10000.0))
    pos = torch.tensor([3, 30])
    kv = torch.zeros(2, b, hkv, 8, d, dtype=torch.bfloat16)
    with torch.no_grad():
        q = fd.norm_qkv_rotary_cache(x, norm.weight, wqkv, cos, sin, pos, kv, torch.tensor([5]), hq, norm.eps)
        t = F.linear(norm(x), wqkv).view(b, 1, hq + 2 * hkv, d)
        qk = apply_rotary(t[:, :, : hq + hkv], cos[pos[:, None]][:, :, None], sin[pos[:, None]][:, :, None])
    assert q.dtype == torch.bfloat16
    torch.testing.assert_close(q.float(), qk[:, :, :hq].transpose(1, 2).reshape(b, hkv, hq // hkv, d).float(),
                               rtol=6e-2, atol=6e-2)
    torch.testing.assert_close(kv[0, :, :, 5].float(), qk[:, 0, hq:].float(), rtol=6e-2, atol=6e-2)
    torch.testing.assert_close(kv[1, :, :, 5].float(), t[:, 0, hq + hkv :].float(), rtol=6e-2, atol=6e-2)


def test_bad_inputs_are_clear_errors() -> None:
    x = torch.randn(FUSED_MAX_BATCH + 1, 32)
    assert fd.MAX_BATCH == FUSED_MAX_BATCH
    with pytest.raises(ValueError, match="at most 8 rows"):
        fd.gemv_residual(x, torch.randn(16, 32), torch.randn(9, 16))
    with pytest.raises(ValueError, match="residual"):
        fd.gemv_residual(x[:2], torch.randn(16, 32), torch.randn(2, 15))
    with pytest.raises(ValueError, match="lse"):
        fd.combine_gemv_residual(torch.randn(2, 2, 3, 2, 8), torch.randn(2, 2, 3), torch.randn(16, 32), torch.randn(2, 16))
    with pytest.raises(ValueError, match="at most 8 rows"):
        fd.combine_gemv_residual(torch.randn(9, 2, 3, 2, 8), torch.randn(9, 2, 3, 2), torch.randn(16, 32), torch.randn(9, 16))
    with pytest.raises(ValueError, match="gate_up_weight"):
        fd.norm_gate_up_silu(x[:2], torch.ones(32), torch.randn(31, 32), 1e-5)
    cos, sin = rotary_tables(16, 8, 10000.0)
    with pytest.raises(ValueError, match="qkv_weight"):
        fd.norm_qkv_rotary_cache(x[:2], torch.ones(32), torch.randn(40, 32), cos, sin, torch.zeros(2, dtype=torch.long),
                                 torch.zeros(2, 2, 1, 4, 8), torch.zeros(1, dtype=torch.long), 4, 1e-5)


def test_not_interpreting_on_cpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="CUDA"):
        fd.gemv_residual(torch.randn(1, 16), torch.randn(16, 16), torch.randn(1, 16))
    net = Transformer(fd_config())
    with pytest.raises(ValueError, match="fused=True needs"):
        StaticCausalLM(net, fused=True)


def fd_config():
    from decoding.nn.transformer import TransformerConfig

    return TransformerConfig(vocab_size=50, dim=32, n_layers=1, n_heads=4, n_kv_heads=2, max_len=64)


def tiny_native() -> Transformer:
    pytest.importorskip("transformers")
    from decoding.adapters.llama import hf_to_native_state, native_config
    from tests.text.tiny_llama import tiny_llama

    hf = tiny_llama(vocab_size=64)
    cfg = native_config(hf.config.to_dict())
    net = Transformer(cfg)
    net.load_state_dict(hf_to_native_state(hf.state_dict(), cfg))
    return net.eval()


@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize("upto", [None, 7])
@pytest.mark.parametrize("fused_combine", [True, False])
@pytest.mark.parametrize("dot", [True, False])
def test_fused_step_equals_the_unfused_step_on_the_tiny_llama(b: int, upto: int | None, fused_combine: bool, dot: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Logits and every cache entry of one decode step, fused (five kernels a layer, or six with the
    attention chunks' combine on its own) and unfused; with the untuned launches (``tl.dot``) and with a
    table of CUDA-core launches (as :func:`fd.launch_config` gives them from a tuned table)."""
    if not dot:
        monkeypatch.setattr(fd, "launch_config", lambda *a: {"block": 2, "block_k": 32, "num_warps": 2, "dot": False})
    net = tiny_native()
    lm = StaticCausalLM(net, capacity=16, fused=True, fused_combine=fused_combine)
    assert lm.fused and lm.decode_backend == "triton"
    sess = lm.session(b, 10)
    gen = torch.Generator().manual_seed(b)
    for t in sess.kv:
        t.normal_(generator=gen)
    sess.valid[:, :7] = True
    sess.valid[0, :3] = False  # a left-padded row: its position differs from the others'
    sess.slot.fill_(6)
    sess.tok.copy_(torch.randint(0, 64, (b, 1), generator=gen))
    before = [t.clone() for t in sess.kv]
    with torch.no_grad():
        out = lm._decode_step(sess, upto=upto).clone()
        fused_kv = [t.clone() for t in sess.kv]
        for t, t0 in zip(sess.kv, before, strict=True):
            t.copy_(t0)
        positions = sess.valid.long().sum(-1, keepdim=True) - 1
        ref = static_forward(net, sess.tok, positions, sess.kv, sess.slot, sess.valid[:, None, None, :], "triton",
                             None, upto=upto, split_mlp=True)
    torch.testing.assert_close(out, ref, **TOL)
    for got, want in zip(fused_kv, sess.kv, strict=True):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("b", [1, 3])
def test_pdl_step_equals_the_plain_fused_step(b: int) -> None:
    """``pdl=True`` (programmatic dependent launch, off under the interpreter, which cannot run the
    kernels' inline assembly): the same logits and cache, bit for bit, as ``pdl=False``; the step is
    not compiled; and greedy tokens through :func:`decoding.decode` are the same."""
    from decoding import decode
    from decoding.processes.autoregressive import Autoregressive

    net = tiny_native()
    lms = [StaticCausalLM(net, capacity=16, fused=True, pdl=pdl) for pdl in (False, True)]
    assert not lms[1].compile and lms[1].pdl and not lms[0].pdl
    outs = []
    for lm in lms:
        sess = lm.session(b, 10)
        gen = torch.Generator().manual_seed(b)
        for t in sess.kv:
            t.normal_(generator=gen)
        sess.valid[:, :7] = True
        sess.valid[0, :3] = False
        sess.slot.fill_(6)
        sess.tok.copy_(torch.randint(0, 64, (b, 1), generator=gen))
        with torch.no_grad():
            outs.append((lm._decode_step(sess).clone(), [t.clone() for t in sess.kv]))
    (ref, ref_kv), (got, got_kv) = outs
    assert torch.equal(got, ref)
    assert all(torch.equal(x, y) for x, y in zip(got_kv, ref_kv, strict=True))
    prompt = {"input_ids": torch.randint(3, 64, (b, 5), generator=torch.Generator().manual_seed(b)),
              "attention_mask": torch.ones(b, 5, dtype=torch.bool)}
    runs = [decode(StaticCausalLM(net, capacity=16, fused=True, pdl=pdl), Autoregressive(greedy=True), prompt,
                   steps=4).x for pdl in (False, True)]
    assert torch.equal(runs[0], runs[1])


def test_fused_decode_gives_the_unfused_tokens_and_large_batches_run_unfused(monkeypatch: pytest.MonkeyPatch) -> None:
    from decoding import decode
    from decoding.processes.autoregressive import Autoregressive

    net = tiny_native()
    calls = []
    kernel = fd.norm_qkv_rotary_cache
    monkeypatch.setattr(fd, "norm_qkv_rotary_cache", lambda *a, **k: calls.append(a[0].shape[0]) or kernel(*a, **k))
    for b in (3, FUSED_MAX_BATCH + 1):
        prompt = {"input_ids": torch.randint(3, 64, (b, 5), generator=torch.Generator().manual_seed(b)),
                  "attention_mask": torch.ones(b, 5, dtype=torch.bool)}
        prompt["attention_mask"][0, :2] = False  # left padding
        runs = [decode(StaticCausalLM(net, capacity=16, **kw), Autoregressive(greedy=True), prompt, steps=5).x
                for kw in ({"backend": "triton"}, {"fused": True})]
        assert torch.equal(runs[0], runs[1])
    assert calls and set(calls) == {3}  # 9 rows: the unfused step


def test_benchmark_engine_loop_fused(tmp_path) -> None:
    """``loop-fused`` is ``loop-triton`` with the fused step, and runs end to end at toy size."""
    import argparse

    from tests.examples.runner import load_script

    bench = load_script("benchmarks/text_generate.py", "text_generate_bench_fused")
    args = argparse.Namespace(engines=["loop-fused", "loop-triton-eager"], attention="auto", compile="auto",
                              cuda_graphs="auto", compile_mode=None, prompt_len=4, new_tokens=4)
    models = bench.ours(args, Transformer(fd_config()))
    fused, plain = models["loop-fused"][1], models["loop-triton-eager"][1]
    assert fused.fused and fused.fused_combine and fused.decode_backend == "triton" and not plain.fused
    six = bench.ours(argparse.Namespace(**{**vars(args), "engines": ["loop-fused6"]}), Transformer(fd_config()))
    assert six["loop-fused6"][1].fused and not six["loop-fused6"][1].fused_combine
    pdl = bench.ours(argparse.Namespace(**{**vars(args), "engines": ["loop-fused-pdl"]}), Transformer(fd_config()))
    assert pdl["loop-fused-pdl"][1].fused and pdl["loop-fused-pdl"][1].pdl and not pdl["loop-fused-pdl"][1].compile
    res = bench.main(["--device", "cpu", "--random-weights", "--tiny", "--batch", "2", "--new-tokens", "4",
                      "--prompt-len", "6", "--reps", "1", "--skip-hf", "--engines", "loop-fused",
                      "--out", str(tmp_path / "r.json")])
    row = res["runs"][0]["engines"]["loop-fused"]
    assert row["error"] is None and row["median_tok_s"] > 0, row
