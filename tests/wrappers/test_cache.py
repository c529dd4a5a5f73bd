"""RADD caching (decoding.wrappers.cache): identical samples, fewer evaluations, honest per-row NFE."""

from __future__ import annotations

import pytest
import torch

from decoding.core.loop import decode
from decoding.core.types import Prediction
from decoding.nn.radd import RADDModel, RADDNet
from decoding.processes.masked import SAMPLERS, Masked
from decoding.processes.masked_joint import JointConditionals, random_joint
from decoding.wrappers.cache import CachedModel


class Counting:
    """Counts the rows the wrapped model actually evaluates."""

    time_independent = True

    def __init__(self, model) -> None:
        self.model = model
        self.rows = 0

    def __call__(self, state):
        self.rows += state.batch_size
        return self.model(state)


@pytest.fixture(scope="module")
def radd() -> RADDModel:
    torch.manual_seed(0)
    return RADDModel(RADDNet(40, dim=32, n_layers=2, n_heads=2, max_len=32).eval())


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [4, 64])
def test_cached_equals_uncached_joint(sampler, steps) -> None:
    model = JointConditionals(random_joint(3, 4, torch.Generator().manual_seed(3)))
    proc = Masked(mask_id=3, length=4, sampler=sampler)
    plain = decode(model, proc, 300, steps=steps, seed=42)
    inner = Counting(model)
    cached = decode(CachedModel(inner), proc, 300, steps=steps, seed=42)
    assert torch.equal(plain.x, cached.x)
    assert float(cached.nfe.sum()) == inner.rows  # NFE counts exactly the rows that ran
    assert float(cached.nfe.max()) <= min(steps, 4 + 1)
    assert float(plain.nfe.max()) == plain.steps <= steps


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_cached_equals_uncached_transformer(radd, sampler) -> None:
    steps, length = 48, 12
    tpl = torch.full((5, length), radd.mask_id)
    tpl[:, :3] = torch.tensor([5, 6, 7])  # a prefix to keep
    tpl[1:, -2:] = torch.tensor([8, 9])  # and a suffix on some rows
    proc = Masked(mask_id=radd.mask_id, sampler=sampler)
    plain = decode(radd, proc, tpl, steps=steps, seed=9)
    cached = decode(CachedModel(radd), proc, tpl, steps=steps, seed=9)
    assert torch.equal(plain.x, cached.x)
    assert torch.equal(cached.x[:, :3], tpl[:, :3])
    blanks = (tpl == radd.mask_id).sum(-1).double()
    assert bool((cached.nfe <= torch.clamp(blanks + 1, max=steps)).all()), cached.nfe
    assert bool((plain.nfe >= cached.nfe).all()) and float(plain.nfe.sum()) > float(cached.nfe.sum())


def test_nfe_bound_many_steps() -> None:
    model = JointConditionals(random_joint(2, 6, torch.Generator().manual_seed(0)))
    res = decode(CachedModel(model), Masked(mask_id=2, length=6), 64, steps=1024, seed=0)
    assert float(res.nfe.max()) <= 7 and float(res.nfe.min()) >= 2
    assert res.steps <= 1024


def test_requires_time_independent_model() -> None:
    with pytest.raises(ValueError, match="time_independent"):
        CachedModel(lambda s: Prediction(logits=torch.zeros(1, 2, 3)))
    CachedModel(lambda s: Prediction(logits=torch.zeros(1, 2, 3)), assume_time_independent=True)


def test_rejects_non_positional_logits() -> None:
    model = CachedModel(lambda s: Prediction(logits=torch.zeros(1, 3)), assume_time_independent=True)
    with pytest.raises(ValueError, match=r"\(B, L, V\)"):
        decode(model, Masked(mask_id=3, length=2), 1, steps=2)


@pytest.mark.gpu
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_cached_equals_uncached_on_cuda(sampler) -> None:
    dev = torch.device("cuda")
    model = JointConditionals(random_joint(3, 4, torch.Generator().manual_seed(3)))
    proc = Masked(mask_id=3, length=4, sampler=sampler)
    plain = decode(model, proc, 300, steps=64, generator=torch.Generator(dev).manual_seed(1))
    cached = decode(CachedModel(model), proc, 300, steps=64, generator=torch.Generator(dev).manual_seed(1))
    assert plain.x.is_cuda and torch.equal(plain.x, cached.x)
    assert float(cached.nfe.max()) <= 5
