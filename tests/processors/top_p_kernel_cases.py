"""Cases for the Triton top-p cut (:mod:`decoding.processors.cut_kernel`) under Triton's interpreter on CPU.

Not collected by itself: ``test_top_p_kernel.py`` runs this file in a fresh process with
``TRITON_INTERPRET=1`` set before triton is imported. The oracle is
:func:`decoding.processors.cut.top_p_drop`: the kernel's mask must equal it bit for bit, on rows of
different content in one batch (plain, coarse ties, a tie group cut in the middle, ``-inf`` holes,
one dominant token, a uniform row), float32 and bfloat16 logits, several chunk sizes (so that tie
groups and ranks span chunks) and ``min_tokens_to_keep`` 1 and 5. The interpreter runs each
program in Python (a few ms each), so the vocabulary of 49,152 is cut in a few large chunks, and
once in the default chunk.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run through test_top_p_kernel.py (needs TRITON_INTERPRET=1 before triton is imported)",
                allow_module_level=True)

from decoding.processors import TopP  # noqa: E402
from decoding.processors.cut import fixed_point, fixed_scalar, order_keys, top_p_drop  # noqa: E402
from decoding.processors.cut_kernel import CHUNK, top_p_drop_kernel, top_p_filter_kernel  # noqa: E402

PS = [0.05, 0.5, 0.9, 0.95, 0.999, 1.0]
KINDS = ["plain", "ties", "split", "holes", "hot", "uniform", "cold", "signed_zero"]
CHUNKS = {1000: 256, 4099: 1024, 49152: 16384}  # 4, 5 and 3 chunks a row (the last one partial for 4099)


def row(kind: str, v: int, g: torch.Generator) -> torch.Tensor:
    """One row of logits of the given ``kind``."""
    x = torch.randn(v, generator=g) * (1.0 + 3.0 * torch.rand(1, generator=g))
    if kind == "ties":  # a few values: every group large, the cut passes through one
        x = (x * 1.5).round() / 1.5
    elif kind == "split":  # two large tie groups that hold nearly all the mass: every p < 1 cuts one
        x = torch.where(torch.rand(v, generator=g) < 0.5, 4.0, 3.0) - 30.0 * (torch.rand(v, generator=g) < 0.1)
    elif kind == "holes":
        x = x.masked_fill(torch.rand(v, generator=g) < 0.4, float("-inf"))
    elif kind == "hot":
        x = x / 0.02
    elif kind == "uniform":
        x = torch.full((v,), 0.7)
    elif kind == "cold":
        x = x / 50.0
    elif kind == "signed_zero":  # -0.0 and +0.0 are one tie group
        x = (x * 0.3).round()
        x[torch.rand(v, generator=g) < 0.5] *= -1.0
    return x


def batch(b: int, v: int, seed: int, dtype: torch.dtype, first: int = 0) -> torch.Tensor:
    """``b`` rows of different kinds (``KINDS`` in turn from ``first``)."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([row(KINDS[(first + i) % len(KINDS)], v, g) for i in range(b)]).to(dtype)


def check(x: torch.Tensor, p: float, keep: int, chunk: int, fill: bool = False) -> torch.Tensor:
    """The kernel's mask equals ``top_p_drop``'s; with ``fill``, its filtered logits (the mask launch
    writes them itself) equal ``masked_fill`` with that mask. Returns ``top_p_drop``'s mask."""
    want = top_p_drop(x, p, keep)
    where = f"p={p} keep={keep} chunk={chunk} fill={fill} {x.dtype}"
    if fill:
        got = top_p_filter_kernel(x, p, keep, chunk=chunk)
        assert got.dtype == x.dtype and got.shape == x.shape
        bad = (got != x.masked_fill(want, float("-inf"))).nonzero()
    else:
        got = top_p_drop_kernel(x, p, keep, chunk=chunk)
        assert got.dtype == torch.bool and got.shape == x.shape
        bad = (got != want).nonzero()
    assert bad.numel() == 0, f"{where}: {bad.shape[0]} differ, first {bad[:5].tolist()}"
    return want


@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize("v", [1000, 4099, 49152])
def test_equals_top_p_drop(b: int, v: int) -> None:
    """Every p, float32 and bfloat16 in turn (each p meets both dtypes across the sizes)."""
    for i, p in enumerate(PS):
        dtype = (torch.float32, torch.bfloat16)[(i + b + v) % 2]
        check(batch(b, v, seed=100 * b + i + v, dtype=dtype, first=i), p, 1, CHUNKS[v], fill=i % 3 == 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_default_chunk_full_vocabulary(dtype: torch.dtype) -> None:
    x = batch(1, 49152, seed=7, dtype=dtype)
    assert 49152 // CHUNK > 8
    check(x, 0.95, 1, CHUNK, fill=dtype == torch.bfloat16)


@pytest.mark.parametrize("v", [1000, 4099])
def test_min_tokens_to_keep_5(v: int) -> None:
    for i, p in enumerate(PS):
        x = batch(3, v, seed=v + i, dtype=(torch.float32, torch.bfloat16)[i % 2], first=2 * i)
        x[0] = x[0] / 0.01  # one dominant token: min_tokens_to_keep decides
        check(x, p, 5, CHUNKS[v], fill=i % 2 == 1)


def test_a_tie_group_split_across_chunks() -> None:
    """Rows whose crossing tie group spans all 17 chunks and is cut in the middle (checked on the
    oracle: some members dropped, some kept), so the members' index-order ranks cross chunks."""
    v = 4099
    x = torch.stack([row("split", v, torch.Generator().manual_seed(1)), row("uniform", v, torch.Generator()),
                     row("split", v, torch.Generator().manual_seed(2)), row("ties", v, torch.Generator().manual_seed(3))])
    keys = order_keys(x)
    for p in (0.3, 0.5, 0.77):
        want = check(x, p, 1, chunk=256, fill=p == 0.5)
        for r in range(3):  # the split, uniform and split rows
            group = keys[r] == keys[r][~want[r]].min()  # the crossing group: the smallest kept key
            assert want[r][group].any() and (~want[r][group]).any(), (r, p)  # cut in the middle
            members = group.nonzero()[:, 0]
            assert members.min() < 256 and members.max() >= v - 256  # ... and spread over the chunks


def test_whole_mass_within_the_limit() -> None:
    """A tiny ``p``: float32 ``1 - p`` is 1.0, above some rows' summed fixed-point mass; ``top_p_drop``
    then drops every token but ``first_m``'s, and so must the kernel (``min_tokens_to_keep`` 1 and 5)."""
    x = batch(8, 1000, seed=11, dtype=torch.float32)
    p = 1e-9
    total = fixed_point(torch.softmax(x.float(), -1)).sum(-1)
    assert (total <= fixed_scalar(1.0 - p)).any(), "no row reaches the edge case: pick another seed"
    for keep in (1, 5):
        want = check(x, p, keep, chunk=256)
        assert (~want).sum(-1).eq(keep).all()
    check(x, p, 1, chunk=256, fill=True)


def test_minus_inf_rows() -> None:
    """Rows that are nearly all ``-inf`` (one, two or five finite logits)."""
    x = torch.full((3, 1000), float("-inf"))
    x[0, 500] = 1.0
    x[1, [3, 999]] = 2.0
    x[2, [0, 1, 2, 600, 700]] = torch.tensor([1.0, 1.0, 0.5, 3.0, 3.0])
    for i, p in enumerate(PS):
        for keep in (1, 5):
            check(x, p, keep, chunk=256, fill=(i + keep) % 2 == 1)


def test_strided_rows_and_top_p_processor() -> None:
    """Rows with a stride beyond ``V`` (a slice of wider logits), and ``TopP(method="kernel")``
    on ``(..., V)`` logits against ``method="search"``, whose cut is ``top_p_drop``."""
    wide = batch(3, 1200, seed=5, dtype=torch.float32)
    x = wide[:, :1000]
    assert not x.is_contiguous()
    check(x, 0.9, 1, chunk=256)
    y = batch(6, 1000, seed=6, dtype=torch.bfloat16).reshape(2, 3, 1000)
    for keep in (1, 5):
        out = TopP(0.9, min_tokens_to_keep=keep, method="kernel")(y)
        assert torch.equal(out, TopP(0.9, min_tokens_to_keep=keep, method="search")(y))


def test_tiny_vocabularies_and_other_dtypes() -> None:
    """One, two and 17 tokens (one chunk, or two with the second nearly empty); float16 and float64."""
    g = torch.Generator().manual_seed(9)
    for v in (1, 2, 17):
        for dtype in (torch.float16, torch.float64):
            x = torch.randn(2, v, generator=g, dtype=torch.float64).to(dtype) * 3  # float64: not float32 values
            for p, keep in ((0.5, 1), (1.0, 2)):
                check(x, p, keep, chunk=16, fill=keep == 1)
