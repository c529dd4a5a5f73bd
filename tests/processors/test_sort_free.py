"""The sort-free truncation (``method="search"``, :mod:`decoding.processors.cut`) against the sorted references.

Two references: transformers' warpers as they are (``torch.sort`` unstable: which tied ids survive a
cut through a tie group is the sort's accident, the number is not), and the same warpers with a
stable sort, whose order among ties the search reproduces exactly. "Equal up to ties" is checked
as: every row holds the same multiset of output values (so, for every logit value, the same number
of kept tokens, and the same renormalised probabilities up to permuting equal ones).
"""

from __future__ import annotations

import pytest
import torch

tlp = pytest.importorskip("transformers.generation.logits_process")

from decoding.core.types import State  # noqa: E402
from decoding.processors import MinP, Temperature, TopP, Typical  # noqa: E402
from decoding.processors.cut import fixed_point, largest_below, order_keys  # noqa: E402
from decoding.processors.rows import RowProcessors  # noqa: E402


class _StableSortTorch:
    """``torch`` with ``sort`` made stable, swapped into transformers' module for the stable reference."""

    def __getattr__(self, name: str):
        return getattr(torch, name)

    @staticmethod
    def sort(*args, **kwargs):
        return torch.sort(*args, stable=True, **kwargs)


def hf_top_p(x: torch.Tensor, p: float, keep: int, stable: bool, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    with monkeypatch.context() as m:
        if stable:
            m.setattr(tlp, "torch", _StableSortTorch())
        return tlp.TopPLogitsWarper(top_p=p, min_tokens_to_keep=keep)(None, x.clone())


def hf_typical(x: torch.Tensor, mass: float, keep: int, stable: bool, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    with monkeypatch.context() as m:
        if stable:
            m.setattr(tlp, "torch", _StableSortTorch())
        return tlp.TypicalLogitsWarper(mass=mass, min_tokens_to_keep=keep)(None, x.clone())


def logits_case(seed: int, v: int, kind: str, rows: int = 12) -> torch.Tensor:
    """Random logits: ``plain``, ``ties`` (coarse grid, a uniform row, tied maxima), ``holes`` (-inf),
    ``hot`` (temperature 0.02: one token takes nearly all mass), ``cold`` (temperature 50: nearly uniform)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, v, generator=g) * (1.0 + 3.0 * torch.rand(rows, 1, generator=g))
    if kind == "ties":
        x = (x * 2).round() / 2
        x[0] = 0.0
        x[1, :10] = x[1].max() + 1
        x[2, ::2] = x[2, 1::2]  # every value twice
    elif kind == "holes":
        x = x.masked_fill(torch.rand(rows, v, generator=g) < 0.4, float("-inf"))
        x[:, 3] = 0.5
        x[-1, 4:] = float("-inf")  # a row with a handful of finite entries
    elif kind == "hot":
        x = x / 0.02
    elif kind == "cold":
        x = x / 50.0
    return x


KINDS = ["plain", "ties", "holes", "hot", "cold"]
F32_EPS = 2.0**-24


def f32(value: float) -> float:
    """A Python threshold as transformers compares it with a float32 tensor (rounded to float32)."""
    return float(torch.tensor(value, dtype=torch.float32))


def exact_top_p(x: torch.Tensor, p: float, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' top-p rule with a stable sort and the running sum in float64 (exact for these
    float32 terms). Returns the output and, per row, whether transformers' float32 running sum
    decides some position differently (a rounding flip: its float64 sum lies within V * 2^-24 of the limit)."""
    v = x.shape[-1]
    order = torch.sort(x, stable=True).indices
    probs = torch.softmax(x.float(), -1).gather(-1, order)
    exact, rounded = probs.double().cumsum(-1), torch.softmax(x.float().gather(-1, order), -1).cumsum(-1)
    limit = f32(1.0 - p)
    drop = exact <= limit
    flip = (drop != (rounded <= limit)) & ((exact - limit).abs() <= v * F32_EPS)
    drop[..., v - min(keep, v):] = False
    return x.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf")), flip.any(-1)


def exact_typical(x: torch.Tensor, mass: float, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' typical rule with a stable sort and a float64 running sum (see :func:`exact_top_p`)."""
    from decoding.processors.typical import typicality_gap

    v = x.shape[-1]
    gap_sorted, order = torch.sort(typicality_gap(x.float()), stable=True)
    exact = torch.softmax(x.float(), -1).gather(-1, order).double().cumsum(-1)
    rounded = torch.softmax(x.float().gather(-1, order), -1).cumsum(-1)
    limit = f32(mass)
    last = (exact < limit).sum(-1, keepdim=True).clamp(max=v - 1)
    drop = gap_sorted > gap_sorted.gather(-1, last)
    drop[..., : min(keep, v)] = False
    flip = ((exact < limit) != (rounded < limit)) & ((exact - limit).abs() <= v * F32_EPS)
    return x.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf")), flip.any(-1)


def assert_equal(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.equal(torch.isneginf(ours), torch.isneginf(ref)), "kept sets differ"
    assert torch.equal(ours, ref)


def assert_equal_up_to_ties(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.equal(ours.sort(-1).values, ref.sort(-1).values), "kept multisets of logits differ"
    # softmax sums in index order, so permuting equal entries may move its output by an ulp
    torch.testing.assert_close(torch.softmax(ours, -1).sort(-1).values, torch.softmax(ref, -1).sort(-1).values,
                               rtol=1e-6, atol=0.0)


def assert_matches_transformers(ours: torch.Tensor, stable: torch.Tensor, unstable: torch.Tensor,
                                flips: torch.Tensor, ties: bool) -> None:
    """Equal to transformers (with a stable sort: exactly; as shipped: up to ties) on every row where
    its float32 running sum decides like exact arithmetic; rows where it does not are rounding flips."""
    same = ~flips
    assert_equal(ours[same], stable[same])
    (assert_equal_up_to_ties if ties else assert_equal)(ours[same], unstable[same])


SETTINGS = [("top_p", p) for p in (0.05, 0.3, 0.8, 0.95, 0.999, 1.0)] + \
    [("typical", m) for m in (0.01, 0.2, 0.5, 0.9, 0.95, 0.999)]


@pytest.mark.parametrize("v", [64, 1000])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("proc", "value"), SETTINGS)
@pytest.mark.parametrize("keep", [1, 3, 20])
def test_search_equals_transformers(v: int, kind: str, proc: str, value: float, keep: int,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    top_p = proc == "top_p"
    x = logits_case(v + keep + (0 if top_p else 7), v, kind)
    ours = (TopP if top_p else Typical)(value, keep, method="search")(x)
    exact, flips = (exact_top_p if top_p else exact_typical)(x, value, keep)
    assert_equal(ours, exact)
    assert flips.sum() <= 1
    hf = hf_top_p if top_p else hf_typical
    assert_matches_transformers(ours, hf(x, value, keep, True, monkeypatch), hf(x, value, keep, False, monkeypatch),
                                flips, ties=kind == "ties")


def test_a_rounding_flip_is_decided_exactly() -> None:
    """1000 equal logits, top-p 0.8: the 200th-lowest token's tail is 200 * 0.001f = 0.2000000095 > 0.2f
    exactly, so it is kept (801 tokens); transformers' float32 running sum rounds it to 0.2f and drops it."""
    x = torch.zeros(1, 1000)
    assert (~torch.isneginf(TopP(0.8, method="search")(x))).sum() == 801
    assert (~torch.isneginf(tlp.TopPLogitsWarper(0.8)(None, x.clone()))).sum() == 800


@pytest.mark.parametrize("mass", [0.2, 0.9, 0.95])
def test_search_at_vocabulary_size_with_ties(mass: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2's vocabulary (49152) at temperature 0.8, one row with many ties, one with -inf holes."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 49152, generator=g) * 3 / 0.8
    x[2] = (x[2] * 4).round() / 4
    x[3, ::3] = float("-inf")
    ours, (exact, flips) = TopP(mass, 2, method="search")(x), exact_top_p(x, mass, 2)
    assert_equal(ours, exact)
    assert_matches_transformers(ours, hf_top_p(x, mass, 2, True, monkeypatch), hf_top_p(x, mass, 2, False, monkeypatch),
                                flips, ties=True)
    ours, (exact, flips) = Typical(mass, 2, method="search")(x), exact_typical(x, mass, 2)
    assert_equal(ours, exact)
    assert_matches_transformers(ours, hf_typical(x, mass, 2, True, monkeypatch),
                                hf_typical(x, mass, 2, False, monkeypatch), flips, ties=True)


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_logits_are_cut_on_their_float32_values(kind: str) -> None:
    """bf16 logits keep their dtype; the cut is the float32 reference's (generate() upcasts logits the same way)."""
    x = logits_case(3, 500, kind).bfloat16()
    for ours, ref in [(TopP(0.9, 2, method="search")(x), exact_top_p(x.float(), 0.9, 2)[0]),
                      (Typical(0.9, 2, method="search")(x), exact_typical(x.float(), 0.9, 2)[0])]:
        assert ours.dtype == torch.bfloat16
        assert_equal(ours.float(), ref)


def test_rows_with_different_parameters_are_each_cut_like_alone() -> None:
    x = logits_case(9, 300, "ties", rows=6)
    chains = [(TopP(0.9, method="search"),), (TopP(0.5, 3, method="search"),), (Typical(0.2, method="search"),),
              (Temperature(0.3), TopP(0.95, method="search")), (MinP(0.1, 2),), (Typical(0.95, 5, method="search"),)]
    st = State(x=torch.zeros(6, 1, dtype=torch.long), t=torch.zeros(6), done=torch.zeros(6, dtype=torch.bool))
    out = RowProcessors(chains)(x, st)
    refs = [exact_top_p(x[0:1], 0.9, 1)[0], exact_top_p(x[1:2], 0.5, 3)[0], exact_typical(x[2:3], 0.2, 1)[0],
            exact_top_p(x[3:4] / 0.3, 0.95, 1)[0], tlp.MinPLogitsWarper(0.1, min_tokens_to_keep=2)(None, x[4:5].clone()),
            exact_typical(x[5:6], 0.95, 5)[0]]
    for r, ref in enumerate(refs):
        assert_equal(out[r : r + 1], ref)


def test_leading_dimensions_are_kept() -> None:
    x = logits_case(1, 80, "plain", rows=6)
    for proc in (TopP(0.8, method="search"), Typical(0.6, method="search")):
        assert torch.equal(proc(x.reshape(2, 3, 80)), proc(x).reshape(2, 3, 80))


def test_search_finds_the_first_group_over_the_limit() -> None:
    """The primitive on a hand-made row: keys 5, 7, 7, 9 with masses 1, 2, 2, 4 (fixed-point units)."""
    keys = torch.tensor([[7, 5, 9, 7]])
    mass = torch.tensor([[2, 1, 4, 2]])
    for limit, want in [(0, 5), (1, 7), (4, 7), (5, 9), (8, 9), (9, 2**32 - 1)]:
        for bits in (1, 2, 4, 8):
            got = largest_below(keys, mass, lambda below, lim=limit: below <= lim, bits)
            assert got.item() == want, (limit, bits)


def test_order_keys_order_like_floats() -> None:
    x = torch.tensor([float("-inf"), -3e38, -1.0, -1e-40, -0.0, 0.0, 1e-40, 1.0, 3e38, float("inf")])
    k = order_keys(x)
    assert (k[1:] >= k[:-1]).all() and k[4] == k[5] and (k >= 0).all() and (k < 2**32).all()
    assert len(set(k.tolist())) == len(x) - 1
    assert fixed_point(torch.tensor([0.0, 1e-30, 0.5, 1.0])).tolist() == [0, 1, 2**61, 2**62]


def test_bad_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        TopP(0.9, method="radix")
    with pytest.raises(ValueError, match="method"):
        Typical(0.9, method="fast")


def test_search_has_no_data_dependent_shapes_or_host_reads() -> None:
    """Dynamo traces the whole processor into one graph: no ``.item()``, no data-dependent shapes,
    so the same code can be captured in a CUDA graph. ``method="auto"`` searches when traced."""
    torch._dynamo.reset()
    x = logits_case(2, 200, "ties", rows=4)
    for proc, eager in [(TopP(0.9, 3), TopP(0.9, 3, method="search")),
                        (Typical(0.5, 2), Typical(0.5, 2, method="search")), (MinP(0.1), MinP(0.1)),
                        (MinP(0.1, 3), MinP(0.1, 3))]:
        compiled = torch.compile(proc, fullgraph=True, backend="eager", dynamic=False)
        assert_equal(compiled(x), eager(x))
    assert_equal_up_to_ties(TopP(0.9, 3)(x), TopP(0.9, 3, method="search")(x))  # eager "auto" sorts


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_first_in_index_order_equals_a_running_count(bits: int) -> None:
    from decoding.processors.cut import first_in_index_order

    gen = torch.Generator().manual_seed(0)
    for v in (1, 2, 63, 64, 65, 1000):
        members = torch.rand(6, v, generator=gen) < torch.tensor([0.0, 0.01, 0.3, 0.5, 0.9, 1.0])[:, None]
        count = torch.randint(0, v + 2, (6, 1), generator=gen)
        count[0] = 0
        expected = members & (members.long().cumsum(-1) <= count)
        assert torch.equal(first_in_index_order(members, count, bits), expected), v


def test_search_has_no_scan() -> None:
    """No cumulative sum in the traced search: inductor's split scan failed to generate code for
    the int64 one on CUDA at batch 8 (torch 2.11, first H100 run)."""
    ops: list[str] = []

    def record(gm: torch.fx.GraphModule, example_inputs):
        ops.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    x = logits_case(2, 300, "ties", rows=4)
    for proc in (TopP(0.9, 3, method="search"), Typical(0.5, 2, method="search")):
        torch.compile(proc, fullgraph=True, backend=record, dynamic=False)(x)
    assert ops and not [op for op in ops if "cumsum" in op or "cummax" in op], sorted(set(ops))


def test_auto_sorts_on_cuda() -> None:
    """Measured on an H100: the library sort beats the search there in every form."""
    from decoding.processors.cut import use_search

    assert not use_search("auto", "cuda") and not use_search("auto", torch.device("cuda", 0))
    assert not use_search("auto", "cpu")  # eager on the CPU: sort
    assert use_search("search", "cuda") and not use_search("sort", "cpu")


@pytest.mark.slow
def test_search_compiles_with_inductor() -> None:
    torch._dynamo.reset()
    x = logits_case(4, 3000, "ties", rows=3)
    for proc in (TopP(0.9, 3, method="search"), Typical(0.5, 2, method="search")):
        assert_equal(torch.compile(proc, fullgraph=True, dynamic=False)(x), proc(x))


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [8])
def test_search_compiles_with_inductor_on_cuda(batch: int) -> None:
    """Batch 8 at SmolLM2's vocabulary crashed inductor's codegen (an int64 split scan) on the first
    H100 run; the search has no scan now."""
    torch._dynamo.reset()
    dev = torch.device("cuda")
    x = torch.randn(batch, 49152, device=dev, generator=torch.Generator(dev).manual_seed(batch)) * 3 / 0.8
    x[0] = (x[0] * 2).round() / 2  # ties
    for proc in (TopP(0.95, 3, method="search"), Typical(0.9, 2, method="search")):
        assert_equal(torch.compile(proc, fullgraph=True, dynamic=False)(x), proc(x))


@pytest.mark.gpu
def test_search_replays_in_a_cuda_graph() -> None:
    torch.manual_seed(0)
    dev = torch.device("cuda")
    static = torch.randn(8, 49152, device=dev) * 3
    procs = (TopP(0.95, method="search"), Typical(0.9, method="search"), MinP(0.05))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for proc in procs:
            proc(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = [proc(static) for proc in procs]
    for seed in range(3):
        fresh = torch.randn(8, 49152, device=dev, generator=torch.Generator(dev).manual_seed(seed)) * 3
        fresh[1] = (fresh[1] * 2).round() / 2
        static.copy_(fresh)
        graph.replay()
        for proc, out in zip(procs, outs, strict=True):
            assert_equal(out, proc(fresh))  # (CPU and CUDA softmaxes may differ in the last bit: not compared)
        assert_equal(outs[0].cpu(), exact_top_p(fresh, 0.95, 1)[0].cpu())
