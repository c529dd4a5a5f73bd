"""Cases for the Triton split-K decode attention kernel under Triton's interpreter on CPU.

Not collected by itself: ``test_decode_attention.py`` runs this file in a fresh process with
``TRITON_INTERPRET=1`` set before triton is imported (the interpreter replaces triton's own jitted
library functions only when it is on at import time).

Checked against the float32 reference (:func:`decoding.nn.attention.naive_attention`) on random
queries, caches and slot masks: grouped queries, head sizes that are not powers of two, partial
blocks, chunks without a valid key, a row without any, float32 and bfloat16; then through
:func:`decoding.nn.attention.attention` and the static-cache language model, whose greedy tokens must
equal those of the SDPA backend.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run through test_decode_attention.py (needs TRITON_INTERPRET=1 before triton is imported)",
                allow_module_level=True)

from decoding.nn.attention import attention, naive_attention  # noqa: E402
from decoding.nn.decode_attention import combine_splits, decode_attention  # noqa: E402


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def case(b: int, hkv: int, g: int, d: int, s: int, dtype: torch.dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hkv, g, d, generator=gen).to(dtype)
    k = torch.randn(b, hkv, s, d, generator=gen).to(dtype)
    v = torch.randn(b, hkv, s, d, generator=gen).to(dtype)
    valid = torch.rand(b, s, generator=gen) < 0.6
    valid[0, : s // 2] = False  # the first chunks of row 0 hold no valid key
    if b > 2:
        valid[2] = False  # a row with no valid slot at all: zeros
    return q, k, v, valid


@pytest.mark.parametrize(("b", "hkv", "g", "d", "s"), [(1, 1, 1, 64, 64), (3, 2, 3, 64, 300), (2, 3, 5, 48, 97),
                                                       (4, 1, 16, 32, 129)])
@pytest.mark.parametrize("splits", [1, 3, None])
def test_kernel_equals_reference_float32(b: int, hkv: int, g: int, d: int, s: int, splits: int | None) -> None:
    q, k, v, valid = case(b, hkv, g, d, s, torch.float32, seed=b + s)
    out = decode_attention(q, k, v, valid, splits=splits, block_n=32)
    ref = naive_attention(q, k, v, valid[:, None, None, :], d**-0.5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    if b > 2:
        assert torch.equal(out[2], torch.zeros_like(out[2]))


@pytest.mark.parametrize(("b", "hkv", "g", "d", "s"), [(1, 1, 1, 32, 40), (2, 3, 3, 64, 130), (3, 2, 4, 48, 65)])
def test_kernel_equals_torch_sdpa(b: int, hkv: int, g: int, d: int, s: int) -> None:
    """Against torch's own SDPA (the backend the kernel replaces), query heads grouped per key/value head."""
    q, k, v, valid = case(b, hkv, g, d, s, torch.float32, seed=7 * b + s)
    valid[:, -1] = True  # SDPA gives NaN for a row without a valid key (the kernel: zeros)
    out = decode_attention(q, k, v, valid, block_n=32)
    qh = q.reshape(b, hkv * g, 1, d)  # query head h * g + j uses key/value head h
    kh, vh = (t.repeat_interleave(g, dim=1) for t in (k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh, attn_mask=valid[:, None, None, :])
    torch.testing.assert_close(out.reshape(b, hkv * g, 1, d), ref, rtol=1e-5, atol=1e-5)


LAUNCHES = [dict(dot=False, block_n=16, splits=3, num_warps=1), dict(dot=False, block_n=32, splits=1, num_warps=2),
            dict(dot=False, block_n=64, splits=5, num_warps=4), dict(dot=True, block_n=16, splits=8, num_warps=2),
            dict(mma=True, block_n=32, splits=2, num_warps=4)]


@pytest.mark.parametrize(("b", "hkv", "g", "d", "s"), [(1, 3, 3, 64, 300), (3, 2, 3, 48, 97), (1, 1, 1, 24, 33),
                                                       (3, 1, 5, 16, 70)])
@pytest.mark.parametrize("launch", LAUNCHES)
def test_launch_variants_equal_reference(b: int, hkv: int, g: int, d: int, s: int, launch: dict) -> None:
    """The split kernel on CUDA cores (``dot=False``: the G queries unpadded) and the launch knobs (keys per
    block, chunks, warps) against the float32 reference: odd sizes, batches 1 and 3, chunks without a
    valid key (their lse is -inf), and a row without any (zeros)."""
    from decoding.nn.decode_attention import decode_attention_partials

    q, k, v, valid = case(b, hkv, g, d, s, torch.float32, seed=b + s + d)
    out = decode_attention(q, k, v, valid, **launch)
    ref = naive_attention(q, k, v, valid[:, None, None, :], d**-0.5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    if b > 2:
        assert torch.equal(out[2], torch.zeros_like(out[2]))
    parts, lse = decode_attention_partials(q, k, v, valid, **launch)
    bn = launch["block_n"]
    chunk = cdiv(cdiv(s, launch["splits"]), bn) * bn  # whole blocks of keys per chunk
    assert parts.shape[2] == cdiv(s, chunk)
    torch.testing.assert_close(combine_splits(parts, lse), out, rtol=1e-6, atol=1e-6)
    for c in range(parts.shape[2]):  # row 0's first half holds no valid key: those chunks' lse is -inf
        if (c + 1) * chunk <= s // 2:
            assert (lse[0, :, c] == float("-inf")).all()


def test_the_measured_attention_launch_is_read_from_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``"decode_attention"`` row of the launch table (``block`` keys a block, ``block_k`` keys a chunk)
    sets the launch of a call with the same head shape (measured at the nearest cache length); what the caller
    passes wins; another head shape or a larger batch keeps today's launch (64-key blocks, about 512 programs)."""
    from decoding.nn import fused_decode as fd
    from decoding.nn.decode_attention import decode_attention_partials, tuned_launch

    row = {"kernel": "decode_attention", "K": 97, "N": 2 * 3 * 48, "batch": 1, "block": 16, "block_k": 32,
           "warps": 2, "dot": False}
    monkeypatch.setattr(fd, "TUNED", [row])
    assert tuned_launch(1, 97, 288) == {"block_n": 16, "chunk": 32, "num_warps": 2, "dot": False, "mma": False}
    assert tuned_launch(2, 97, 288) is None and tuned_launch(1, 96, 288) == tuned_launch(1, 97, 288)
    q, k, v, valid = case(1, 2, 3, 48, 97, torch.float32, seed=5)
    parts, _ = decode_attention_partials(q, k, v, valid)
    assert parts.shape[2] == 4  # 97 keys in chunks of 32
    parts, _ = decode_attention_partials(q, k, v, valid, splits=1)
    assert parts.shape[2] == 1
    torch.testing.assert_close(decode_attention(q, k, v, valid),
                               naive_attention(q, k, v, valid[:, None, None, :], 48**-0.5), rtol=1e-5, atol=1e-5)
    q, k, v, valid = case(1, 2, 3, 32, 96, torch.float32, seed=5)
    assert decode_attention_partials(q, k, v, valid)[0].shape[2] == 2  # untuned: 64-key blocks, 2 chunks


def test_a_row_timed_against_sdpa_picks_the_kernel_only_where_it_was_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """``beats_sdpa``: only rows measured against SDPA (``"peer": "sdpa"``) that beat it, for batches above half the
    row's and up to it, at the nearest cache length measured."""
    from decoding.nn import fused_decode as fd
    from decoding.nn.decode_attention import beats_sdpa, tuned_launch

    win = {"kernel": "decode_attention", "K": 328, "N": 576, "batch": 64, "block": 32, "block_k": 320,
           "warps": 4, "dot": True, "mma": True, "us": 6.0, "peer_us": 17.0, "peer": "sdpa"}
    lose = {**win, "batch": 8, "us": 9.0, "peer_us": 8.0}
    monkeypatch.setattr(fd, "TUNED", [win, lose, {**win, "K": 456, "block_k": 448}])
    assert beats_sdpa(64, 328, 576) and beats_sdpa(33, 392, 576)
    assert tuned_launch(40, 392, 576)["chunk"] == 320 and tuned_launch(40, 400, 576)["chunk"] == 448
    assert not beats_sdpa(32, 328, 576) and not beats_sdpa(9, 328, 576)  # half of 64 or less: no row
    assert not beats_sdpa(8, 328, 576) and not beats_sdpa(5, 328, 576)  # the batch-8 row lost to SDPA
    assert tuned_launch(4, 328, 576) is None and tuned_launch(1, 328, 576) is None
    assert not beats_sdpa(65, 328, 576) and not beats_sdpa(64, 328, 640)
    monkeypatch.setattr(fd, "TUNED", [{**win, "peer": "today's launch"}])
    assert not beats_sdpa(64, 328, 576)


def test_bad_block_n_is_a_clear_error() -> None:
    q, k, v, valid = case(1, 1, 2, 32, 40, torch.float32, seed=6)
    with pytest.raises(ValueError, match="block_n must be a power of two"):
        decode_attention(q, k, v, valid, block_n=24)


def test_kernel_equals_reference_bfloat16() -> None:
    q, k, v, valid = case(2, 2, 3, 64, 150, torch.bfloat16, seed=3)
    out = decode_attention(q, k, v, valid, splits=2, block_n=32)
    assert out.dtype == torch.bfloat16
    ref = naive_attention(q.float(), k.float(), v.float(), valid[:, None, None, :], 64**-0.5)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


def test_tensor_core_products_are_within_bfloat16_rounding() -> None:
    """``mma=True``: both products in the cache's bf16 (the probabilities rounded to bf16 before the second), float32
    accumulation: within bf16 rounding of the float32 reference, and no farther from it than SDPA's bf16 result."""
    for b, hkv, g, d, s, splits in ((2, 3, 3, 64, 300, 1), (3, 2, 3, 48, 97, 3), (1, 1, 5, 16, 70, 2)):
        q, k, v, valid = case(b, hkv, g, d, s, torch.bfloat16, seed=b + s)
        out = decode_attention(q, k, v, valid, splits=splits, block_n=32, mma=True)
        assert out.dtype == torch.bfloat16
        ref = naive_attention(q.float(), k.float(), v.float(), valid[:, None, None, :], d**-0.5)
        torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
        err = (out.float() - ref).abs().max().item()
        bias = torch.zeros((), dtype=torch.bfloat16).masked_fill(~valid[:, None, None, :].bool(), float("-inf"))
        sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        rows = valid.any(-1)  # SDPA gives NaN for a row without a valid key; the kernel zeros
        sdpa_err = (sdpa[rows].float() - ref[rows]).abs().max().item()
        assert err <= max(2 * sdpa_err, 1e-2), (err, sdpa_err)


def test_a_tensor_core_row_of_the_table_applies_to_half_precision_caches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table row with ``"mma": true`` (measured on a bf16 cache) sets ``MMA`` for a bf16 cache; a float32 cache keeps
    float32 products; the caller's ``mma`` wins."""
    from decoding.nn import decode_attention as da
    from decoding.nn import fused_decode as fd

    row = {"kernel": "decode_attention", "K": 97, "N": 2 * 3 * 48, "batch": 3, "block": 32, "block_k": 64,
           "warps": 4, "dot": True, "mma": True}
    monkeypatch.setattr(fd, "TUNED", [row])
    assert da.tuned_launch(3, 97, 288)["mma"] is True
    seen: list[bool] = []
    real = da._kernel

    class Spy:
        def __init__(self, device: torch.device) -> None:
            self.launch = real(device)

        def __getitem__(self, grid):  # noqa: ANN001, ANN204
            def run(*args, **kw):  # noqa: ANN002, ANN003, ANN202
                seen.append(kw["MMA"])
                return self.launch[grid](*args, **kw)
            return run

    monkeypatch.setattr(da, "_kernel", Spy)
    for dtype in (torch.bfloat16, torch.float32):
        q, k, v, valid = case(3, 2, 3, 48, 97, dtype, seed=9)
        da.decode_attention_partials(q, k, v, valid)
    q, k, v, valid = case(3, 2, 3, 48, 97, torch.bfloat16, seed=9)
    da.decode_attention_partials(q, k, v, valid, mma=False)
    assert seen == [True, False, False]


def test_attention_backend_groups_query_heads_and_leaves_prefill_to_sdpa() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 6, 1, 32, generator=gen)  # 6 query heads over 2 key/value heads
    k, v = torch.randn(2, 2, 40, 32, generator=gen), torch.randn(2, 2, 40, 32, generator=gen)
    mask = (torch.rand(2, 40, generator=gen) < 0.8)[:, None, None, :]
    torch.testing.assert_close(attention(q, k, v, mask=mask, backend="triton"),
                               attention(q, k, v, mask=mask, backend="naive"), rtol=1e-5, atol=1e-5)
    qp = torch.randn(2, 6, 5, 32, generator=gen)  # a prefill: causal, goes to SDPA
    assert torch.equal(attention(qp, k, v, causal=True, backend="triton"), attention(qp, k, v, causal=True, backend="sdpa"))


def test_an_int8_mask_equals_the_bool_mask() -> None:
    q, k, v, valid = case(3, 2, 3, 32, 70, torch.float32, seed=4)
    assert torch.equal(decode_attention(q, k, v, valid.to(torch.int8), block_n=32), decode_attention(q, k, v, valid, block_n=32))


def test_bad_inputs_are_clear_errors() -> None:
    q, k, v, valid = case(2, 2, 3, 32, 20, torch.float32, seed=1)
    with pytest.raises(ValueError, match="valid must be"):
        decode_attention(q, k, v, valid[:, :10])
    with pytest.raises(ValueError, match="expects q"):
        decode_attention(q[:, :1], k, v, valid)


def test_not_interpreting_on_cpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v, valid = case(1, 1, 1, 32, 8, torch.float32, seed=2)
    with pytest.raises(ValueError, match="CUDA"):
        decode_attention(q, k, v, valid)
    with pytest.raises(ValueError, match="CUDA"):
        attention(q, k, v, backend="triton")


def test_static_cache_lm_gives_the_sdpa_tokens() -> None:
    from decoding import decode
    from decoding.adapters.static_cache import StaticCausalLM
    from decoding.nn.transformer import Transformer, TransformerConfig
    from decoding.processes.autoregressive import Autoregressive

    torch.manual_seed(0)
    net = Transformer(TransformerConfig(vocab_size=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_len=128))
    prompt = {"input_ids": torch.randint(3, 300, (3, 9), generator=torch.Generator().manual_seed(1)),
              "attention_mask": torch.ones(3, 9, dtype=torch.bool)}
    prompt["attention_mask"][0, :4] = False  # left padding
    runs = []
    for backend in ("sdpa", "triton"):
        lm = StaticCausalLM(net, capacity=32, backend=backend)
        runs.append(decode(lm, Autoregressive(greedy=True), prompt, steps=8).x)
    assert torch.equal(runs[0], runs[1])
