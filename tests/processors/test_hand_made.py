"""Each processor alone on small hand-made logits whose answer is worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from decoding.core.types import State
from decoding.processors import MinP, RepetitionPenalty, Temperature, TopK, TopP, Typical, standard_processors

NEG = float("-inf")


def probs_logits(*p: float) -> torch.Tensor:
    return torch.tensor([[math.log(x) for x in p]])


def kept(out: torch.Tensor) -> list[bool]:
    return torch.isfinite(out[0]).tolist()


def token_state(ids: list[list[int]], mask: list[list[bool]] | None = None) -> State:
    x = torch.tensor(ids)
    memory = {} if mask is None else {"attention_mask": torch.tensor(mask)}
    return State(x=x, t=torch.zeros(len(ids)), done=torch.zeros(len(ids), dtype=torch.bool), memory=memory)


def test_top_k_keeps_k_largest_and_ties_at_the_boundary() -> None:
    x = torch.tensor([[1.0, 3.0, 2.0, 0.5]])
    assert kept(TopK(2)(x)) == [False, True, True, False]
    tied = torch.tensor([[1.0, 3.0, 2.0, 3.0]])
    assert kept(TopK(1)(tied)) == [False, True, False, True]  # both 3s are "the largest"
    assert kept(TopK(1, min_tokens_to_keep=3)(x)) == [True, True, True, False]
    assert kept(TopK(10)(x)) == [True] * 4
    assert torch.equal(TopK(2)(x)[0, 1:3], x[0, 1:3])  # kept logits unchanged


def test_top_p_keeps_smallest_nucleus() -> None:
    x = probs_logits(0.5, 0.3, 0.15, 0.05)
    assert kept(TopP(0.75)(x)) == [True, True, False, False]  # 0.5 + 0.3 >= 0.75
    assert kept(TopP(0.4)(x)) == [True, False, False, False]
    assert kept(TopP(0.9)(x)) == [True, True, True, False]
    assert kept(TopP(1.0)(x)) == [True] * 4
    assert kept(TopP(0.4, min_tokens_to_keep=2)(x)) == [True, True, False, False]


def test_min_p_scales_with_the_top_probability() -> None:
    x = probs_logits(0.5, 0.3, 0.15, 0.05)
    assert kept(MinP(0.2)(x)) == [True, True, True, False]  # threshold 0.1
    assert kept(MinP(0.5)(x)) == [True, True, False, False]  # threshold 0.25
    assert kept(MinP(1.0)(x)) == [True, False, False, False]
    assert kept(MinP(1.0, min_tokens_to_keep=3)(x)) == [True, True, True, False]
    assert kept(MinP(0.0)(x)) == [True] * 4


def test_typical_can_drop_the_most_likely_token() -> None:
    # p = (.5, .3, .15, .05): H = 1.1423 nats; gaps |-log p - H| = (.449, .062, .755, 1.853).
    # Typicality order: .3, .5, .15, .05 with cumulative mass .3, .8, .95, 1.
    x = probs_logits(0.5, 0.3, 0.15, 0.05)
    assert kept(Typical(0.25)(x)) == [False, True, False, False]  # the mode (p=.5) is dropped
    assert kept(Typical(0.5)(x)) == [True, True, False, False]
    assert kept(Typical(0.9)(x)) == [True, True, True, False]
    assert kept(Typical(0.99)(x)) == [True] * 4
    assert kept(Typical(0.25, min_tokens_to_keep=2)(x)) == [True, True, False, False]


def test_typical_uniform_keeps_everything_and_ignores_minus_inf() -> None:
    assert kept(Typical(0.1)(torch.zeros(1, 5))) == [True] * 5  # every gap is 0: all tied
    x = torch.tensor([[0.0, 0.0, NEG, 0.0]])
    assert kept(Typical(0.1)(x)) == [True, True, False, True]


def test_repetition_penalty_once_per_seen_token() -> None:
    x = torch.tensor([[2.0, -1.0, 3.0, 0.5]])
    out = RepetitionPenalty(2.0)(x, token_state([[0, 1, 0]]))
    assert out.tolist() == [[1.0, -2.0, 3.0, 0.5]]
    masked = RepetitionPenalty(2.0)(x, token_state([[0, 1, 0]], [[True, False, True]]))
    assert masked.tolist() == [[1.0, -1.0, 3.0, 0.5]]  # padding does not count
    with pytest.raises(ValueError, match="token state"):
        RepetitionPenalty(2.0)(x, None)


def test_temperature() -> None:
    x = torch.tensor([[2.0, -1.0]])
    assert Temperature(0.5)(x).tolist() == [[4.0, -2.0]]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Temperature(-1.0),
        lambda: Temperature(0.0),
        lambda: TopK(0),
        lambda: TopK(3, min_tokens_to_keep=0),
        lambda: TopP(0.0),
        lambda: TopP(1.5),
        lambda: MinP(-0.1),
        lambda: Typical(0.0),
        lambda: Typical(1.0),
        lambda: Typical(1.5),
        lambda: RepetitionPenalty(0.0),
    ],
)
def test_bad_arguments_raise_value_error(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_typical_error_message_names_the_range() -> None:
    with pytest.raises(ValueError, match=r"typical mass must be in \(0, 1\), got 1.5"):
        Typical(1.5)


@pytest.mark.parametrize(
    "proc",
    [Temperature(0.7), TopK(3), TopP(0.8), MinP(0.1), Typical(0.5), RepetitionPenalty(1.3)],
    ids=lambda p: type(p).__name__,
)
def test_processors_do_not_modify_their_input(proc) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 20, generator=g)
    x[0, 3] = NEG
    before = x.clone()
    state = token_state([[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 0, 1]])
    out = proc(x, state)
    assert torch.equal(x, before)
    assert out.data_ptr() != x.data_ptr()


def test_standard_order_and_noops() -> None:
    procs = standard_processors(temperature=0.8, top_k=40, top_p=0.9, min_p=0.05, typical=0.9, repetition_penalty=1.2)
    assert [type(p).__name__ for p in procs] == ["RepetitionPenalty", "Temperature", "TopK", "TopP", "MinP", "Typical"]
    assert standard_processors(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0) == []
