"""Continuous-batching primitives: resuming decode(), per-row random streams, merging rows and their KV
caches, per-row processors and constraints. A row decoded in a changing batch gets exactly the
tokens it gets alone."""

from __future__ import annotations

import pytest
import torch

import decoding as dc
from decoding import decode
from decoding.core.row_constraints import RowConstraints
from decoding.core.row_generators import RowGenerators, row_seed
from decoding.core.rows import merge_rows, release_rows
from decoding.core.sampling import sample_categorical
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from decoding.processors import RepetitionPenalty, Temperature, TopK, TopP, Typical
from decoding.processors.rows import RowProcessors
from tests.core.markov import MarkovModel

pytestmark = pytest.mark.one_thread
P = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.45, 0.05, 0.5]], dtype=torch.float64)


@pytest.fixture(scope="module", params=["native", "hf"])
def lm(request, tiny_llama_dir):
    return dc.load(tiny_llama_dir, device="cpu", engine=request.param)


def test_resuming_a_state_continues_the_same_decode() -> None:
    prompt = torch.zeros(6, 1, dtype=torch.long)
    whole = decode(MarkovModel(P), Autoregressive(), prompt, steps=9, seed=4)
    g = torch.Generator().manual_seed(4)
    part = decode(MarkovModel(P), Autoregressive(), prompt, steps=4, generator=g)
    rest = decode(MarkovModel(P), Autoregressive(), part.state, steps=5, generator=g)
    assert torch.equal(rest.x, whole.x) and rest.state.step == 9
    assert generated_tokens(rest.state) == generated_tokens(whole.state)


def test_row_generators_make_each_row_independent_of_its_neighbours() -> None:
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    alone = [sample_categorical(logits[r : r + 1], torch.Generator().manual_seed(10 + r)) for r in range(4)]
    together = sample_categorical(logits, RowGenerators.from_seeds([10, 11, 12, 13]))
    assert together.tolist() == [int(a) for a in alone]  # row r == a batch of one with generator r
    swapped = sample_categorical(logits[[2, 0]], RowGenerators.from_seeds([12, 10]))
    assert swapped.tolist() == [together[2].item(), together[0].item()]
    assert row_seed(5, 0) == 5 and row_seed(5, 1) != row_seed(6, 0) and row_seed(5, 1) == row_seed(5, 1)
    with pytest.raises(ValueError, match="3 row generators for a batch of 4"):
        sample_categorical(logits, RowGenerators.from_seeds([1, 2, 3]))


def test_row_generators_sample_the_exact_distribution() -> None:
    """Per-row streams are still exact draws: 20k rows of one distribution, chi-square at a fixed seed."""
    from scipy.stats import chisquare

    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    draws = sample_categorical(p.log().expand(20000, 4), RowGenerators.from_seeds(range(20000)))
    counts = torch.bincount(draws, minlength=4).double()
    expected = p.double() / p.double().sum() * 20000
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


def _run(lm, prompt: str, seed: int, steps: int, state=None):
    proc = Autoregressive(eos_token_id=None, pad_token_id=lm.pad_token_id)
    g = RowGenerators.from_seeds([seed])
    return decode(lm.model, proc, state if state is not None else lm.encode([prompt], False), steps=steps, generator=g)


def test_rows_moved_between_batches_get_the_tokens_they_get_alone(lm) -> None:
    """A joins, B joins two steps later with a longer prompt, A leaves; copies of rows diverge by seed."""
    proc = Autoregressive(eos_token_id=None, pad_token_id=lm.pad_token_id)
    alone = {p: generated_tokens(_run(lm, p, s, 10).state)[0] for p, s in (("Hi", 1), ("a much longer prompt here", 2))}
    ga, gb, gc = (torch.Generator().manual_seed(s) for s in (1, 2, 3))
    a = decode(lm.model, proc, lm.encode(["Hi"], False), steps=3, generator=RowGenerators([ga])).state
    a = merge_rows(lm.model, [(a, [0])], room=16)  # out of the model's prompt pool
    b = decode(lm.model, proc, lm.encode(["a much longer prompt here"], False), steps=1,
               generator=RowGenerators([gb])).state
    ab = merge_rows(lm.model, [(a, [0]), (b, [0])], pad_token_id=lm.pad_token_id, room=16)
    release_rows(lm.model, a)
    assert ab.x.shape[0] == 2 and ab.memory["prompt_length"].tolist()[1] - ab.memory["prompt_length"].tolist()[0] > 0
    ab = decode(lm.model, proc, ab, steps=4, generator=RowGenerators([ga, gb])).state
    # A has its 7 tokens; keep B only, and a copy of B with another stream
    gc.set_state(gb.get_state())
    bb = merge_rows(lm.model, [(ab, [1, 1])], room=16)
    release_rows(lm.model, ab)
    assert generated_tokens(ab)[0] == alone["Hi"][:7]
    bb = decode(lm.model, proc, bb, steps=5, generator=RowGenerators([gb, gc])).state
    got = generated_tokens(bb)
    assert got[0] == alone["a much longer prompt here"] and got[1] == got[0]  # same stream state, same tokens
    if lm.engine == "native":  # a released static session may be reused: its old states are refused
        with pytest.raises(ValueError, match="reused"):
            merge_rows(lm.model, [(ab, [0])])
    with pytest.raises(ValueError, match="at least one row"):
        merge_rows(lm.model, [(bb, [])])


def test_merge_rows_refuses_models_without_row_memory() -> None:
    state = decode(MarkovModel(P), Autoregressive(), torch.zeros(2, 1, dtype=torch.long), steps=2, seed=0).state
    with pytest.raises(TypeError, match="merge_rows"):
        merge_rows(MarkovModel(P), [(state, [0])])


def test_per_row_greedy_mixes_argmax_and_samples(lm) -> None:
    proc = Autoregressive(pad_token_id=lm.pad_token_id, greedy=torch.tensor([True, False]))
    batch = lm.encode(["Hi", "Hi"], False)
    out = decode(lm.model, proc, batch, steps=6, generator=RowGenerators.from_seeds([0, 1])).state
    greedy = decode(lm.model, Autoregressive(pad_token_id=lm.pad_token_id, greedy=True), lm.encode(["Hi"], False), steps=6)
    sampled = _run(lm, "Hi", 1, 6)
    assert generated_tokens(out) == [generated_tokens(greedy.state)[0], generated_tokens(sampled.state)[0]]


def test_row_processors_are_bit_identical_to_each_rows_chain() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 64, generator=g) * 3
    x = torch.randint(0, 64, (5, 7), generator=g)
    state = dc.core.types.State(x=x, t=torch.zeros(5), done=torch.zeros(5, dtype=torch.bool),
                                memory={"attention_mask": torch.ones(5, 7, dtype=torch.bool)})
    chains = [(Temperature(0.7), TopP(0.9)), (), (RepetitionPenalty(1.3), TopK(5)), (Temperature(0.7), TopP(0.9)),
              (Typical(0.8),)]
    out = RowProcessors(chains)(logits, state)
    for r, chain in enumerate(chains):
        want = logits[r : r + 1]
        view = dc.core.types.State(x=x[r : r + 1], t=torch.zeros(1), done=torch.zeros(1, dtype=torch.bool),
                                   memory={"attention_mask": torch.ones(1, 7, dtype=torch.bool)})
        for proc in chain:
            want = proc(want, view)
        assert torch.equal(out[r : r + 1], want)
    assert not RowProcessors([(), ()]) and len(RowProcessors(chains).groups) == 3


def test_row_constraints_follow_each_rows_grammar(lm) -> None:
    from decoding.api.causal_lm import compiled_grammar

    yes_no, _ = compiled_grammar(lm, 'start: "yes" | "no"\n', None)
    digits, _ = compiled_grammar(lm, "start: /[0-9]+/\n", None)
    rows = [yes_no.constraint(1, max_tokens=4), None, digits.constraint(1, max_tokens=5)]
    width = lm.model.vocab_size
    constraint = RowConstraints(rows, width)
    proc = Autoregressive(eos_token_id=list(lm.eos_token_ids), pad_token_id=lm.pad_token_id)
    batch = lm.encode(["Q:", "Q:", "Q:"], False)
    out = decode(lm.model, proc, batch, steps=5, constraint=constraint, generator=RowGenerators.from_seeds([0, 1, 2]))
    texts = [lm.decode(t) for t in generated_tokens(out.state)]
    assert texts[0] in ("yes", "no") and texts[2].isdigit() and constraint.is_complete().tolist() == [True, True, True]
    for row, grammar, budget in ((0, yes_no, 4), (2, digits, 5)):
        alone = decode(lm.model, proc, lm.encode(["Q:"], False), steps=5, constraint=grammar.constraint(1, max_tokens=budget),
                       generator=RowGenerators.from_seeds([row]))
        assert lm.decode(generated_tokens(alone.state)[0]) == texts[row]
    with pytest.raises(ValueError, match="3 row constraints for a batch of 2"):
        constraint.mask(decode(lm.model, proc, lm.encode(["a", "b"], False), steps=1, seed=0).state)
