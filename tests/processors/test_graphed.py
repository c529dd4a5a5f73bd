"""State-free processor chains replayed as one CUDA graph (decoding/processors/graphed.py).

On the CPU: which chains are graphed, that equal chains share one graph, the bound on kept chains,
and that the chain equals its processors off CUDA. On a GPU (``gpu``): replayed chains equal the
eager ones exactly (the same kernels), and ``decode()`` gives the same tokens with and without.
"""

from __future__ import annotations

import pytest
import torch

import decoding.processors.graphed as graphed
from decoding.processors import MinP, RepetitionPenalty, Temperature, TopK, TopP, Typical, standard_processors
from decoding.processors.graphed import GraphedChain, graph_chain

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _fresh_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graphed, "_CHAINS", type(graphed._CHAINS)())


def test_state_free_chains_on_cuda_become_one_graphed_chain_others_stay() -> None:
    procs = standard_processors(temperature=0.8, top_k=50, top_p=0.95, min_p=0.05, typical=0.9)
    assert all(type(p).stateless for p in procs)
    (chain,) = graph_chain(procs, CUDA)  # built without touching a GPU: capture waits for the first call
    assert isinstance(chain, GraphedChain) and chain.processors == tuple(procs)
    assert graph_chain(procs, "cpu") is procs
    assert graph_chain([], CUDA) == []
    with_penalty = [RepetitionPenalty(1.2), *procs]  # reads the tokens so far: not state-free
    assert not getattr(RepetitionPenalty, "stateless", False)
    assert graph_chain(with_penalty, CUDA) is with_penalty


def test_equal_chains_share_one_graph_and_few_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    a = graph_chain([Temperature(0.7), TopP(0.9)], CUDA)[0]
    assert graph_chain([Temperature(0.7), TopP(0.9)], CUDA)[0] is a  # a new decode() call reuses the graph
    assert graph_chain([Temperature(0.7), TopP(0.8)], CUDA)[0] is not a
    for i in range(graphed.MAX_CHAINS + 3):
        graph_chain([Temperature(1.0 + i / 100)], CUDA)
    assert len(graphed._CHAINS) == graphed.MAX_CHAINS
    assert graph_chain([Temperature(0.7), TopP(0.9)], CUDA)[0] is not a  # dropped, least recently used
    monkeypatch.setattr(graphed, "ENABLED", False)
    procs = [Temperature(0.7)]
    assert graph_chain(procs, CUDA) is procs


def test_unhashable_state_free_processors_stay_eager() -> None:
    class Listy(Temperature):
        __hash__ = None  # type: ignore[assignment]

    procs = [Listy(0.5)]
    assert graph_chain(procs, CUDA) is procs


def test_off_cuda_the_chain_is_its_processors() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 500, generator=gen)
    procs = [Temperature(0.8), TopK(40), TopP(0.9), MinP(0.02), Typical(0.95)]
    want = logits
    for p in procs:
        want = p(want, None)
    got = GraphedChain(procs)(logits)
    assert torch.equal(got, want) and got is not logits


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("b", [1, 3])
def test_replayed_chain_equals_the_eager_one_on_the_gpu(dtype: torch.dtype, b: int) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    chains = [[Temperature(0.8), TopP(0.95)], [TopK(50)], [MinP(0.05)], [Typical(0.9)],
              [Temperature(0.7), TopK(100), TopP(0.9), MinP(0.02)]]
    gen = torch.Generator(device="cuda").manual_seed(b)
    for procs in chains:
        chain = graph_chain(procs, CUDA)[0]
        assert isinstance(chain, GraphedChain)
        for _ in range(3):  # several replays of one graph with new logits (rounded logits: ties too)
            logits = (torch.randn(b, 49152, device="cuda", generator=gen) * 4).round().to(dtype)
            want = logits
            for p in procs:
                want = p(want, None)
            assert torch.equal(chain(logits), want), procs
        assert len(chain.replay) == 1 and not chain.replay.failed


@pytest.mark.gpu
def test_decode_gives_the_same_tokens_with_the_graphed_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    from decoding import decode
    from decoding.adapters.static_cache import StaticCausalLM
    from decoding.nn.transformer import Transformer, TransformerConfig
    from decoding.processes.autoregressive import Autoregressive

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_len=96))
    net = net.to("cuda").eval()
    ids = torch.randint(3, 512, (2, 8), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    procs = standard_processors(temperature=0.8, top_p=0.9)
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(graphed, "ENABLED", enabled)
        lm = StaticCausalLM(net, capacity=64, compile=False, cuda_graphs=True)
        runs.append(decode(lm, Autoregressive(), ids, steps=24, processors=procs, seed=5).x)
    assert torch.equal(runs[0], runs[1])


def test_a_shape_is_captured_at_its_second_call_in_a_row_and_replayed_once_kept() -> None:
    chain = GraphedChain([Temperature(0.5)])
    a, b = ("a",), ("b",)  # stand-ins for GraphReplay.signature(logits)
    assert [chain._replays(s) for s in (a, a, a)] == [False, True, True]
    assert [chain._replays(s) for s in (b, a, b, a)] == [False, False, False, False]  # no graph kept yet
    chain.replay._graphs[a] = object()  # as if a's graph had been captured
    assert [chain._replays(s) for s in (b, a, b, a)] == [False, True, False, True]
    assert chain.replay.max_graphs == graphed.GRAPHS_PER_CHAIN
