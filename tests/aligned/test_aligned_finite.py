"""The finite-language constraint: exact masks, advance, completion, rollback, fork, bad input."""

from __future__ import annotations

import pytest
import torch

from decoding import decode
from decoding.aligned import FiniteLanguage
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from tests.aligned.toy import BIN_EOS, UniformModel, binary_language


def _mask_rows(c) -> list[list[int]]:
    return [torch.nonzero(r).flatten().tolist() for r in c.mask()]


def test_masks_follow_the_prefix_trie():
    lang = FiniteLanguage([(0,), (0, 1), (1, 1, 0)], vocab_size=4, eos_token_id=3)
    c = lang.constraint(2)
    assert _mask_rows(c) == [[0, 1], [0, 1]]
    c.advance(torch.tensor([0, 1]))
    assert _mask_rows(c) == [[1, 3], [1]]  # "0" is a sentence and a prefix of "01"
    assert c.is_complete().tolist() == [True, False]
    c.advance(torch.tensor([3, 1]))
    assert _mask_rows(c) == [[3], [0]]  # after EOS only EOS again
    c.advance(torch.tensor([-1, 0]))  # -1: row emitted nothing
    assert _mask_rows(c) == [[3], [3]]
    assert c.is_complete().tolist() == [True, True]


def test_rollback_and_fork():
    lang = binary_language()
    c = lang.constraint(1)
    c.advance(torch.tensor([1]))
    f = c.fork()
    c.advance(torch.tensor([0]))
    assert f.rows == [(1,)] and c.rows == [(1, 0)]
    c.rollback(2)
    assert c.rows == [()]
    with pytest.raises(ValueError, match="roll back 1"):
        c.rollback(1)


def test_rejects_tokens_outside_the_language():
    c = binary_language().constraint(1)
    c.advance(torch.tensor([0]))
    with pytest.raises(ValueError, match="token 1 is not allowed after prefix"):
        c.advance(torch.tensor([1]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sequences=[], vocab_size=3, eos_token_id=2), "at least one sequence"),
        (dict(sequences=[(0, 5)], vocab_size=3, eos_token_id=2), "outside"),
        (dict(sequences=[(0, 2)], vocab_size=3, eos_token_id=2), "contains the EOS"),
        (dict(sequences=[(0,)], vocab_size=3, eos_token_id=7), "eos_token_id 7"),
    ],
)
def test_bad_languages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FiniteLanguage(**kwargs)


def test_plain_constrained_decoding_stays_inside_the_language():
    lang = binary_language()
    res = decode(
        UniformModel(3),
        Autoregressive(eos_token_id=BIN_EOS, pad_token_id=BIN_EOS),
        torch.zeros(64, 1, dtype=torch.long),
        steps=8,
        constraint=lang.constraint(64),
        seed=0,
    )
    for row in generated_tokens(res.state):
        assert row[-1] == BIN_EOS and tuple(row[:-1]) in lang
