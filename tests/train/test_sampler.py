"""The epoch sampler: permutations without replacement, a state that continues the same order."""

from __future__ import annotations

import pytest
import torch

from decoding.train.sampler import EpochSampler


def test_each_epoch_is_a_permutation_and_drops_the_remainder() -> None:
    s = EpochSampler(10, 3, seed=7)
    epochs = [torch.cat([s.next() for _ in range(3)]) for _ in range(4)]
    for e, seen in enumerate(epochs):
        assert seen.numel() == 9 and seen.unique().numel() == 9  # no repeats within an epoch
        assert torch.equal(seen, s.permutation(e)[:9])
    assert not torch.equal(epochs[0], epochs[1])
    assert s.epoch == 3 and s.position == 9 and s.batches_per_epoch == 3


def test_state_continues_the_same_order() -> None:
    a = EpochSampler(11, 4, seed=3)
    first = [a.next() for _ in range(5)]
    b = EpochSampler(11, 4, seed=3)
    b.load_state(a.state())
    c = EpochSampler(11, 4, seed=3)
    for _ in range(5):
        c.next()
    assert all(torch.equal(x, y) for x, y in zip([b.next() for _ in range(6)], [c.next() for _ in range(6)], strict=True))
    assert len(first) == 5
    with pytest.raises(ValueError, match="batch=5"):
        EpochSampler(11, 4, seed=3).load_state({**a.state(), "batch": 5})


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="fewer than the batch size"):
        EpochSampler(3, 4, 0)
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        EpochSampler(3, 0, 0)
