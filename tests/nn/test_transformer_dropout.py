"""Dropout of :class:`decoding.nn.transformer.Transformer`: off at 0 and in eval mode, where the config says otherwise."""

from __future__ import annotations

import pytest
import torch

from decoding.nn.any_subset import AnySubsetTransformer, chain_query
from decoding.nn.radd import RADDNet
from decoding.nn.transformer import Transformer, TransformerConfig

# Logits [0, :3, :4] of the model below, computed with the transformer before dropout existed (git main, e4213ba).
_GOLDEN = [
    [0.5709800720214844, 0.022126920521259308, -0.07663768529891968, -0.015346997417509556],
    [0.0008991233771666884, 0.6029912233352661, 0.167768657207489, 0.0503208227455616],
    [-0.028857426717877388, 0.3308350145816803, 0.529021680355072, -0.09191237390041351],
]
_GOLDEN_SUM = 16.09401885740226


def _net(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, max_len=16, causal=False, **kw))


def _tokens() -> torch.Tensor:
    return torch.arange(24).view(2, 12) % 50


@torch.no_grad()
def test_dropout_zero_is_the_model_without_dropout() -> None:
    net = _net().train()
    assert net.cfg.dropout == 0.0
    rng = torch.get_rng_state()
    out, _ = net(_tokens())
    assert torch.equal(torch.get_rng_state(), rng)  # no random draw in training mode at p = 0
    torch.testing.assert_close(out[0, :3, :4], torch.tensor(_GOLDEN), rtol=0, atol=1e-6)
    assert abs(float(out.double().sum()) - _GOLDEN_SUM) < 1e-4
    assert torch.equal(out, net.eval()(_tokens())[0])


@torch.no_grad()
def test_dropout_changes_training_outputs_not_eval_outputs() -> None:
    plain, drop = _net(), _net(dropout=0.3)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), drop.state_dict().values(), strict=True))
    reference = plain.eval()(_tokens())[0]
    drop.train()
    first, second = drop(_tokens())[0], drop(_tokens())[0]
    assert not torch.allclose(first, reference, atol=1e-3) and not torch.allclose(first, second, atol=1e-3)
    drop.eval()
    assert torch.equal(drop(_tokens())[0], reference)


@torch.no_grad()
def test_embedding_dropout_rate() -> None:
    """With no blocks the hidden state is RMSNorm(dropout(embedding)): a dropped feature is exactly 0,
    kept ones are scaled by 1 / (1 - p) (the norm removes the scale, so compare with the eval output)."""
    p = 0.25
    torch.manual_seed(1)
    net = Transformer(TransformerConfig(vocab_size=40, dim=64, n_layers=0, n_heads=4, max_len=256, dropout=p)).train()
    tokens = torch.randint(0, 40, (16, 256))
    h, _ = net(tokens, return_hidden=True)
    dropped = (h == 0).double().mean()
    n = h.numel()  # binomial: 5 standard errors
    assert abs(float(dropped) - p) < 5 * (p * (1 - p) / n) ** 0.5
    e = net.eval()(tokens, return_hidden=True)[0]
    kept = (h != 0).float()
    scale = (h * e).sum(-1, keepdim=True) / (e * e * kept).sum(-1, keepdim=True)  # one factor per position
    torch.testing.assert_close(h, scale * kept * e, rtol=1e-4, atol=1e-5)
    assert float(scale.min()) > 1.0  # the kept features carry more of the norm


def test_bad_dropout() -> None:
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout must lie in"):
            TransformerConfig(vocab_size=10, dim=8, n_heads=2, dropout=p)


@torch.no_grad()
def test_radd_and_any_subset_pass_dropout_through() -> None:
    torch.manual_seed(0)
    radd = RADDNet(30, dim=16, n_layers=1, n_heads=2, max_len=12, dropout=0.5)
    assert radd.cfg.dropout == 0.5 and radd.config_dict()["transformer"]["dropout"] == 0.5
    x = torch.randint(0, 31, (3, 12))
    assert not torch.equal(radd.train()(x), radd(x))
    assert torch.equal(radd.eval()(x), radd(x))
    arm = AnySubsetTransformer(TransformerConfig(vocab_size=30, dim=16, n_layers=1, n_heads=2, max_len=12, causal=False,
                                                 dropout=0.5))
    assert arm.net.cfg.dropout == 0.5
    tokens = torch.randint(0, 30, (2, 12))
    visible = torch.arange(12).expand(2, 12) < 4
    order = torch.cat([torch.arange(4, 12), torch.full((4,), -1)]).expand(2, 12)
    q = chain_query(tokens, visible, order)
    assert not torch.equal(arm.train()(q), arm(q))
    assert torch.equal(arm.eval()(q), arm(q))
