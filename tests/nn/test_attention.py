"""Every attention backend agrees with the naive reference (CPU: SDPA; GPU: xformers)."""

from __future__ import annotations

import pytest
import torch

from decoding.nn.attention import attention, choose_backend

CASES = [
    # (B, H, Hkv, Lq, Lk, D, causal)
    (2, 4, 4, 7, 7, 16, False),
    (2, 4, 4, 7, 7, 16, True),
    (3, 6, 2, 1, 9, 32, True),  # one decode step against a cache, grouped-query
    (1, 8, 8, 5, 12, 64, True),  # bottom-right aligned causal
]


def _qkv(b, h, hkv, lq, lk, d, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, lq, d, generator=g).to(device, dtype)
    k = torch.randn(b, hkv, lk, d, generator=g).to(device, dtype)
    v = torch.randn(b, hkv, lk, d, generator=g).to(device, dtype)
    return q, k, v


@pytest.mark.parametrize("case", CASES)
def test_sdpa_matches_naive(case):
    b, h, hkv, lq, lk, d, causal = case
    q, k, v = _qkv(b, h, hkv, lq, lk, d)
    ref = attention(q, k, v, causal=causal, backend="naive")
    out = attention(q, k, v, causal=causal, backend="sdpa")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_naive_is_softmax_attention_by_hand():
    q, k, v = _qkv(1, 1, 1, 3, 3, 4)
    s = (q[0, 0] @ k[0, 0].T) / 2.0
    s = s.masked_fill(torch.triu(torch.ones(3, 3, dtype=torch.bool), 1), float("-inf"))
    ref = torch.softmax(s, -1) @ v[0, 0]
    torch.testing.assert_close(attention(q, k, v, causal=True, backend="naive")[0, 0], ref)


def test_bool_and_additive_masks_agree():
    q, k, v = _qkv(2, 2, 2, 5, 6, 8)
    m = torch.rand(2, 1, 5, 6, generator=torch.Generator().manual_seed(1)) > 0.3
    m[..., 0] = True
    add = torch.zeros(m.shape).masked_fill(~m, float("-inf"))
    for be in ("sdpa", "naive"):
        torch.testing.assert_close(attention(q, k, v, mask=m, backend=be), attention(q, k, v, mask=add, backend="naive"), atol=1e-5, rtol=1e-5)


def test_ragged_block_diagonal_equals_separate_sequences():
    lens = [3, 5, 2]
    q, k, v = _qkv(1, 2, 2, sum(lens), sum(lens), 8)
    for causal in (False, True):
        packed = attention(q, k, v, causal=causal, seq_lens_q=lens, backend="sdpa")
        start = 0
        for n in lens:
            sl = slice(start, start + n)
            alone = attention(q[:, :, sl], k[:, :, sl], v[:, :, sl], causal=causal, backend="naive")
            torch.testing.assert_close(packed[:, :, sl], alone, atol=1e-5, rtol=1e-5)
            start += n


def test_backend_choice_and_errors(monkeypatch):
    assert choose_backend(torch.device("cpu")) == "sdpa"
    monkeypatch.setenv("DECODING_ATTENTION", "naive")
    assert choose_backend(torch.device("cpu")) == "naive"
    assert choose_backend(torch.device("cpu"), "sdpa") == "sdpa"
    with pytest.raises(ValueError, match="unknown attention backend"):
        choose_backend(torch.device("cpu"), "flash9")
    with pytest.raises(ValueError, match="needs CUDA"):
        choose_backend(torch.device("cpu"), "xformers")
    q, k, v = _qkv(1, 3, 2, 2, 2, 4)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        attention(q, k, v)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES)
def test_xformers_matches_naive(case, dtype):
    b, h, hkv, lq, lk, d, causal = case
    q, k, v = _qkv(b, h, hkv, lq, lk, d, device="cuda", dtype=dtype)
    ref = attention(q, k, v, causal=causal, backend="naive").float()
    for be in ("xformers", "sdpa"):
        out = attention(q, k, v, causal=causal, backend=be).float()
        torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_xformers_masks_on_gpu():
    lens = [3, 5, 2]
    q, k, v = _qkv(1, 4, 2, sum(lens), sum(lens), 64, device="cuda", dtype=torch.float16)
    for causal in (False, True):
        ref = attention(q, k, v, causal=causal, seq_lens_q=lens, backend="naive").float()
        out = attention(q, k, v, causal=causal, seq_lens_q=lens, backend="xformers").float()
        torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)
    q, k, v = _qkv(2, 4, 4, 5, 13, 64, device="cuda", dtype=torch.float16)
    m = torch.rand(2, 1, 5, 13, device="cuda") > 0.3
    m[..., 0] = True
    torch.testing.assert_close(
        attention(q, k, v, mask=m, backend="xformers").float(), attention(q, k, v, mask=m, backend="naive").float(), atol=2e-2, rtol=2e-2
    )
