"""Every processor equals transformers' implementation on random logits (ties, -inf, min_tokens_to_keep).

transformers is a test-only peer here. "Equal" means bit-identical outputs: the same kept set
(same ``-inf`` positions) and the same values, hence the same probabilities after softmax. Top-p and
typical are checked here with ``method="sort"`` (the sorted reference, ties in ``torch.sort``'s own
order); the default sort-free search is checked in ``test_sort_free.py``.
"""

from __future__ import annotations

import pytest
import torch

tlp = pytest.importorskip("transformers.generation.logits_process")

from decoding.core.types import State  # noqa: E402
from decoding.processors import (  # noqa: E402
    MinP,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    Typical,
    standard_processors,
)

V = 64


def random_logits(seed: int, rows: int = 16, ties: bool = False, holes: bool = False) -> torch.Tensor:
    """Random logits; ``ties`` rounds them to a coarse grid (many exact ties), ``holes`` adds -inf."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, V, generator=g) * (1.0 + 3.0 * torch.rand(rows, 1, generator=g))
    if ties:
        x = (x * 2).round() / 2
        x[0] = 0.0  # a fully uniform row
        x[1, :10] = x[1].max() + 1  # ten tied maxima
    if holes:
        x = x.masked_fill(torch.rand(rows, V, generator=g) < 0.3, float("-inf"))
        x[:, 0] = 0.5  # every row keeps a finite entry
    return x


def random_ids(seed: int, rows: int = 16, length: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randint(0, V, (rows, length), generator=g)


def state_of(ids: torch.Tensor) -> State:
    return State(x=ids, t=torch.zeros(ids.shape[0]), done=torch.zeros(ids.shape[0], dtype=torch.bool))


CASES = [dict(seed=s, ties=t, holes=h) for s in range(3) for t in (False, True) for h in (False, True)]
CASE_IDS = [f"seed{c['seed']}{'-ties' if c['ties'] else ''}{'-holes' if c['holes'] else ''}" for c in CASES]


def assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert torch.equal(torch.isneginf(ours), torch.isneginf(theirs)), "kept sets differ"
    assert torch.equal(ours, theirs)
    assert torch.equal(torch.softmax(ours, -1), torch.softmax(theirs, -1))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("mass", [0.01, 0.2, 0.5, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("keep", [1, 3, 20])
def test_typical_equals_transformers(case: dict, mass: float, keep: int) -> None:
    x = random_logits(**case)
    ours = Typical(mass, min_tokens_to_keep=keep, method="sort")(x)
    theirs = tlp.TypicalLogitsWarper(mass=mass, min_tokens_to_keep=keep)(None, x.clone())
    assert_same(ours, theirs)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("p", [0.05, 0.3, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("keep", [1, 3, 20])
def test_top_p_equals_transformers(case: dict, p: float, keep: int) -> None:
    x = random_logits(**case)
    assert_same(TopP(p, keep, method="sort")(x), tlp.TopPLogitsWarper(top_p=p, min_tokens_to_keep=keep)(None, x.clone()))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("k", [1, 5, 40, 100])
@pytest.mark.parametrize("keep", [1, 8])
def test_top_k_equals_transformers(case: dict, k: int, keep: int) -> None:
    x = random_logits(**case)
    assert_same(TopK(k, keep)(x), tlp.TopKLogitsWarper(top_k=k, min_tokens_to_keep=keep)(None, x.clone()))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("min_p", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("keep", [1, 5])
def test_min_p_equals_transformers(case: dict, min_p: float, keep: int) -> None:
    x = random_logits(**case)
    assert_same(MinP(min_p, keep)(x), tlp.MinPLogitsWarper(min_p=min_p, min_tokens_to_keep=keep)(None, x.clone()))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("t", [0.3, 1.7])
def test_temperature_equals_transformers(case: dict, t: float) -> None:
    x = random_logits(**case)
    assert_same(Temperature(t)(x), tlp.TemperatureLogitsWarper(t)(None, x.clone()))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty_equals_transformers(seed: int, penalty: float) -> None:
    x = random_logits(seed, ties=True)
    ids = random_ids(seed)
    theirs = tlp.RepetitionPenaltyLogitsProcessor(penalty)(ids, x.clone())
    assert_same(RepetitionPenalty(penalty)(x, state_of(ids)), theirs)


def test_repetition_penalty_skips_left_padding_like_generate() -> None:
    """generate() passes the number of left-pad tokens as ``prompt_ignore_length``; we read the mask."""
    x = random_logits(7)
    ids = random_ids(7)
    pads = torch.randint(0, 6, (ids.shape[0],), generator=torch.Generator().manual_seed(3))
    mask = torch.arange(ids.shape[1])[None, :] >= pads[:, None]
    theirs = tlp.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=pads)(ids, x.clone())
    st = State(x=ids, t=torch.zeros(16), done=torch.zeros(16, dtype=torch.bool), memory={"attention_mask": mask})
    assert_same(RepetitionPenalty(1.5)(x, st), theirs)


@pytest.mark.parametrize("seed", range(4))
def test_standard_chain_equals_transformers_generate_chain(seed: int) -> None:
    """The documented order is generate()'s: repetition, temperature, top-k, top-p, min-p, typical."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    settings = dict(temperature=0.7, top_k=30, top_p=0.9, min_p=0.02, typical_p=0.8, repetition_penalty=1.3)
    cfg = GenerationConfig(do_sample=True, **settings)
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                        num_attention_heads=1, num_key_value_heads=1))
    hf = tiny._get_logits_processor(generation_config=cfg, input_ids_seq_length=12, encoder_input_ids=None,
                                    prefix_allowed_tokens_fn=None, logits_processor=None, device="cpu",
                                    model_kwargs={})
    assert [type(p).__name__ for p in hf] == [
        "RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper", "TopKLogitsWarper",
        "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper",
    ]
    x = random_logits(seed, ties=seed % 2 == 1)
    ids = random_ids(seed)
    theirs = x.clone()
    for p in hf:
        theirs = p(ids, theirs)
    ours = x
    st = state_of(ids)
    for p in standard_processors(temperature=0.7, top_k=30, top_p=0.9, min_p=0.02, typical=0.8,
                                 repetition_penalty=1.3):
        ours = p(ours, st)
    if seed % 2 == 1:  # ties: the default sort-free top-p / typical pick tied ids in index order, torch.sort its own way
        assert torch.equal(ours.sort(-1).values, theirs.sort(-1).values)
    else:
        assert_same(ours, theirs)


@pytest.mark.parametrize("mass", [0.2, 0.9])
def test_typical_equals_transformers_at_vocabulary_size(mass: float) -> None:
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 49152, generator=g) * 3
    x[2] = (x[2] * 4).round() / 4  # many ties
    theirs = tlp.TypicalLogitsWarper(mass=mass, min_tokens_to_keep=5)(None, x.clone())
    assert_same(Typical(mass, 5, method="sort")(x), theirs)
