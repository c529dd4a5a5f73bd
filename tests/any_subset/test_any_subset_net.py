"""The two-stream AS-ARM network: one pass gives the same conditionals as revealing tokens one by one."""

from __future__ import annotations

import pytest
import torch

from decoding.nn.any_subset import HIDDEN, AnySubsetLM, AnySubsetQuery, AnySubsetTransformer, chain_query
from decoding.nn.transformer import TransformerConfig

V, L = 11, 9


def _net(seed: int = 0, **kw) -> AnySubsetTransformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4, max_len=L, causal=False, **kw)
    net = AnySubsetTransformer(cfg).eval()
    with torch.no_grad():  # larger weights than the 0.02 init so that conditionals differ visibly
        for p in net.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return net


def _problem(b: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (b, L), generator=g)
    visible = torch.rand(b, L, generator=g) < 0.4
    orders = []
    for r in range(b):
        tg = torch.nonzero(~visible[r]).flatten()
        orders.append(tg[torch.randperm(len(tg), generator=g)])
    t = max(len(o) for o in orders)
    order = torch.full((b, t), -1)
    for r, o in enumerate(orders):
        order[r, : len(o)] = o
    return tokens, visible, order


def test_chain_equals_sequential_reveals():
    net = _net()
    tokens, visible, order = _problem(4, seed=1)
    with torch.no_grad():
        chain = net(chain_query(tokens, visible, order))  # (B, T, V)
        for j in range(order.shape[1]):
            rank = torch.where(visible, 0, HIDDEN)
            for r in range(tokens.shape[0]):
                for i in range(j):
                    if order[r, i] >= 0:
                        rank[r, order[r, i]] = i + 1
            valid = order[:, j] >= 0
            q = AnySubsetQuery(tokens, rank, order[:, j : j + 1].clamp(min=0), torch.full((4, 1), j + 1))
            step = net(q)[:, 0]
            torch.testing.assert_close(step[valid], chain[valid, j], atol=2e-5, rtol=1e-5)


def test_no_leak_from_own_or_later_tokens():
    net = _net(1)
    tokens, visible, order = _problem(3, seed=2)
    j = 2
    changed = tokens.clone()
    for r in range(3):  # change the contents at order slots >= j (and of hidden positions)
        for i in range(j, order.shape[1]):
            if order[r, i] >= 0:
                changed[r, order[r, i]] = (changed[r, order[r, i]] + 1) % V
    with torch.no_grad():
        a = net(chain_query(tokens, visible, order))
        b = net(chain_query(changed, visible, order))
    torch.testing.assert_close(a[:, : j + 1], b[:, : j + 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, j + 1 :], b[:, j + 1 :])


def test_marginals_in_the_same_pass():
    net = _net(2)
    tokens, visible, order = _problem(3, seed=3)
    with torch.no_grad():
        both = net(chain_query(tokens, visible, order, marginal_pos=order, marginals_see_chain=False))
        alone = net(chain_query(tokens, visible, order[:, :1]))
    t = order.shape[1]
    # the marginal of the first target given visible equals chain row 0
    torch.testing.assert_close(both[:, t], alone[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[:, 0], alone[:, 0], atol=1e-5, rtol=1e-5)


def test_fully_masked_row_and_padding_are_finite():
    net = _net(3)
    tokens = torch.zeros(2, L, dtype=torch.long)
    visible = torch.zeros(2, L, dtype=torch.bool)
    order = torch.stack([torch.arange(L), torch.tensor([3, 1, -1, -1, -1, -1, -1, -1, -1])])
    with torch.no_grad():
        out = net(chain_query(tokens, visible, order))
    assert out.shape == (2, L, V) and torch.isfinite(out).all()


def test_bad_inputs():
    net = _net()
    with pytest.raises(ValueError, match="bidirectional"):
        AnySubsetTransformer(TransformerConfig(vocab_size=V, dim=32, n_layers=1, n_heads=4, causal=True))
    tokens = torch.zeros(1, L + 1, dtype=torch.long)
    q = AnySubsetQuery(tokens, torch.zeros_like(tokens), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        net(q)
    bad = AnySubsetQuery(tokens[:, :L], torch.zeros(1, L, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=">= 1"):
        bad.validate()
    with pytest.raises(ValueError, match="banned"):
        AnySubsetLM(net, banned_tokens=[V])


@pytest.mark.gpu
def test_xformers_matches_sdpa_on_gpu():
    net = _net().cuda()
    tokens, visible, order = _problem(4, seed=5)
    q = chain_query(tokens.cuda(), visible.cuda(), order.cuda(), marginal_pos=order.cuda(), marginals_see_chain=True)
    with torch.no_grad():
        a = net(q, backend="xformers")
        b = net(q, backend="sdpa")
    torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
