"""FlexAttention as the decode attention (``backend="flex"``): equal to the float32 reference on the CPU (eagerly), the
static-cache engine gives the SDPA engine's tokens with it, and compiled on a GPU (a ``gpu`` test)."""

from __future__ import annotations

import warnings

import pytest
import torch

from decoding import decode
from decoding.adapters.static_cache import StaticCausalLM
from decoding.core.fallback import FallbackWarning
from decoding.nn.attention import attention, naive_attention
from decoding.nn.flex_decode import flex_available, flex_decode_attention
from decoding.nn.transformer import Transformer, TransformerConfig
from decoding.processes.autoregressive import Autoregressive

pytestmark = pytest.mark.skipif(not flex_available(), reason="needs torch.nn.attention.flex_attention")


def case(b: int, hkv: int, g: int, d: int, s: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, hkv, n, d, generator=gen) for n in (g, s, s))
    valid = torch.rand(b, s, generator=gen) > 0.3
    valid[0, : s // 2] = False  # a row whose first half is empty
    if b > 2:
        valid[2, 1:] = False  # a row with one valid slot
    return q, k, v, valid


@pytest.mark.parametrize(("b", "hkv", "g", "d", "s"), [(1, 3, 3, 64, 70), (3, 2, 3, 16, 33), (3, 1, 5, 8, 9)])
def test_flex_equals_the_reference(b: int, hkv: int, g: int, d: int, s: int) -> None:
    q, k, v, valid = case(b, hkv, g, d, s, seed=b + s)
    out = flex_decode_attention(q, k, v, valid, d**-0.5)
    ref = naive_attention(q, k, v, valid[:, None, None, :], d**-0.5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_a_row_without_a_valid_slot_is_finite() -> None:
    """No decode step has one; the finite empty score gives the average of the row's values, never NaN."""
    q, k, v, valid = case(2, 2, 3, 16, 40, seed=4)
    valid[1] = False
    out = flex_decode_attention(q, k, v, valid, 0.25)
    torch.testing.assert_close(out[1], v[1].mean(1, keepdim=True).expand(-1, 3, -1), rtol=1e-5, atol=1e-5)


def test_the_backend_groups_query_heads_and_leaves_prefill_to_sdpa() -> None:
    """Through :func:`decoding.nn.attention.attention`: a one-query call with a key mask ``(B, 1, 1, S)`` runs flex on
    the grouped query heads; a causal (prefill) call runs SDPA; both equal the reference."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(2, 6, 1, 16, generator=gen), torch.randn(2, 2, 20, 16, generator=gen), torch.randn(2, 2, 20, 16, generator=gen)
    mask = (torch.rand(2, 20, generator=gen) > 0.2)[:, None, None, :]
    ref = naive_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), mask, 16**-0.5)
    torch.testing.assert_close(attention(q, k, v, mask=mask, backend="flex"), ref, rtol=1e-5, atol=1e-5)
    qc = torch.randn(2, 6, 20, 16, generator=gen)
    torch.testing.assert_close(attention(qc, k, v, causal=True, backend="flex"),
                               attention(qc, k, v, causal=True, backend="sdpa"), rtol=1e-5, atol=1e-5)


def test_the_flex_engine_gives_the_sdpa_tokens_and_compiles_on_cuda_only() -> None:
    """The static-cache engine with ``backend="flex"`` (eager on the CPU: PyTorch's reference implementation) decodes
    the same greedy tokens as with SDPA in float32, on a left-padded batch. Compiling it on the CPU is refused: torch's
    CPU flex template gave NaN logits now and then with several threads (the compiled step is for CUDA, where the
    GPU test checks it)."""
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(vocab_size=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_len=128))
    prompt = {"input_ids": torch.randint(3, 300, (3, 9), generator=torch.Generator().manual_seed(1)),
              "attention_mask": torch.ones(3, 9, dtype=torch.bool)}
    prompt["attention_mask"][0, :4] = False
    runs = []
    for backend in ("sdpa", "flex"):
        lm = StaticCausalLM(net, capacity=32, backend=backend, compile=False)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", FallbackWarning)
            runs.append(decode(lm, Autoregressive(greedy=True), prompt, steps=8).x)
        assert not [w for w in seen if issubclass(w.category, FallbackWarning)]
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="compiles on CUDA only"):
        StaticCausalLM(net, capacity=32, backend="flex", compile=True)


@pytest.mark.gpu
def test_the_compiled_flex_kernel_on_the_gpu_is_within_bfloat16_rounding() -> None:
    """On CUDA, compiled (inductor's flex-decoding kernel) on a bf16 cache of SmolLM2-135M's head shape at batch 64:
    within bf16 rounding of the float32 reference (rows with empty halves, a row with one valid slot)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    q, k, v, valid = (t.cuda() for t in case(64, 3, 3, 64, 328, seed=7))
    q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    out = torch.compile(flex_decode_attention, fullgraph=True)(q, k, v, valid, 64**-0.5)
    ref = naive_attention(q.float(), k.float(), v.float(), valid[:, None, None, :], 64**-0.5)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
