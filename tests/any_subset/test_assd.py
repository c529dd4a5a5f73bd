"""ASSD and sequential any-order sampling reproduce a known joint exactly; NFE <= generated tokens."""

from __future__ import annotations

import functools
import itertools
from collections import Counter

import pytest
import torch

from decoding import Prediction, State, decode
from decoding.nn.any_subset import AnySubsetLM, AnySubsetTransformer, chain_query
from decoding.nn.transformer import TransformerConfig
from decoding.processes.any_order import AnyOrder, infill_steps
from decoding.processes.assd import ASSD
from tests.any_subset.joint import JointModel, chi2_pvalue, conditional_table, random_joint

V, L, N = 3, 4, 20000
JOINT = random_joint(V, L, seed=0)


def _run(process, fixed: dict[int, int], seed: int):
    ids = torch.zeros(N, L, dtype=torch.long)
    targets = torch.ones(N, L, dtype=torch.bool)
    for i, v in fixed.items():
        ids[:, i] = v
        targets[:, i] = False
    prompt = {"input_ids": ids, "targets": targets}
    res = decode(JointModel(JOINT), process, prompt, steps=infill_steps(prompt), seed=seed)
    free = [i for i in range(L) if i not in fixed]
    counts = Counter(tuple(row) for row in res.x[:, free].tolist())
    assert (res.x[:, list(fixed)] == ids[:, list(fixed)]).all(), "visible tokens must never change"
    return res, counts, L - len(fixed)


@functools.cache
def _fully_masked(k: int):
    return _run(ASSD(k=k), {}, seed=11 + k)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_assd_samples_the_joint(k):
    res, counts, n_gen = _fully_masked(k)
    assert chi2_pvalue(counts, conditional_table(JOINT, {})) > 1e-3
    assert (res.nfe <= n_gen).all()  # every call commits at least one token
    if k > 1:
        assert res.nfe.mean() < n_gen - 0.5  # and drafting really saves calls


def test_assd_infill_random_order_and_adaptive_k():
    fixed = {1: 2}
    want = conditional_table(JOINT, fixed)
    for proc in (ASSD(k=4, order="random"), ASSD(k=2, adaptive=True, k_max=4)):
        res, counts, n_gen = _run(proc, fixed, seed=5)
        assert chi2_pvalue(counts, want) > 1e-3, proc
        assert (res.nfe <= n_gen).all()


def test_sequential_any_order_and_k1_are_the_same_sampler():
    a, ca, _ = _run(AnyOrder(order="random"), {0: 1}, seed=3)
    b, _, _ = _run(ASSD(k=1, order="random"), {0: 1}, seed=3)
    assert chi2_pvalue(ca, conditional_table(JOINT, {0: 1})) > 1e-3
    assert torch.equal(a.x, b.x) and torch.equal(a.nfe, b.nfe)


def test_the_chi2_test_has_power():
    """Drafts alone (product of marginals) are far from the joint: without verification the test fails."""
    _, counts, _ = _fully_masked(4)
    marg = [JOINT.sum(dim=[d for d in range(L) if d != i]) for i in range(L)]
    prod = {s: float(torch.prod(torch.stack([marg[i][s[i]] for i in range(L)]))) for s in itertools.product(range(V), repeat=L)}
    assert chi2_pvalue(counts, prod) < 1e-6


def test_assd_on_the_network_samples_its_chain_joint():
    """With an (inconsistent, random) network, ASSD targets the chain along the order, not the drafts."""
    torch.manual_seed(0)
    net = AnySubsetTransformer(TransformerConfig(vocab_size=4, dim=32, n_layers=2, n_heads=4, max_len=4, causal=False))
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.4)
    model = AnySubsetLM(net)
    visible = torch.tensor([False, True, False, False])
    free = [0, 2, 3]  # left-to-right order over the targets
    combos = torch.tensor(list(itertools.product(range(4), repeat=3)))
    tokens = torch.full((len(combos), 4), 1)
    tokens[:, free] = combos
    order = torch.tensor(free).expand(len(combos), 3)
    with torch.no_grad():
        logp = torch.log_softmax(net(chain_query(tokens, visible.expand_as(tokens), order)).double(), -1)
    joint = logp.gather(2, combos[..., None]).squeeze(-1).sum(1).exp()
    want = {tuple(c): float(p) for c, p in zip(combos.tolist(), joint, strict=True)}
    n = 8000
    ids = torch.full((n, 4), 1)
    prompt = {"input_ids": ids, "targets": ~visible.expand(n, 4)}
    res = decode(model, ASSD(k=4), prompt, steps=infill_steps(prompt), seed=21)
    counts = Counter(tuple(r) for r in res.x[:, free].tolist())
    assert chi2_pvalue(counts, want) > 1e-3
    assert (res.nfe <= 3).all() and (res.x[:, 1] == 1).all()


class _NextTokenModel:
    def __call__(self, state):
        return Prediction(logits=torch.zeros(state.batch_size, V))


def test_bad_inputs():
    for k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="k .*>= 1"):
            ASSD(k=k)
    with pytest.raises(ValueError, match="k_max"):
        ASSD(k=4, adaptive=True, k_max=3)
    with pytest.raises(ValueError, match="unknown order"):
        ASSD(order="right_to_left")
    ids = torch.zeros(2, L, dtype=torch.long)
    targets = torch.ones(2, L, dtype=torch.bool)
    with pytest.raises(ValueError, match="needs an any-subset model"):
        decode(_NextTokenModel(), ASSD(k=2), {"input_ids": ids, "targets": targets}, steps=4, seed=0)
    targets[:, 0] = False  # targets are positions 1, 2, 3
    bad_orders = {
        "duplicate": [[1, 2, 3], [1, 1, 2]],
        "visible position": [[1, 2, 3], [0, 1, 2]],
        "missing target": [[1, 2, 3], [1, 2, -1]],
        "padding inside": [[1, 2, 3], [1, -1, 2]],
    }
    for name, rows in bad_orders.items():
        with pytest.raises(ValueError, match="not a permutation"):
            decode(JointModel(JOINT), ASSD(k=2), {"input_ids": ids, "targets": targets, "order": torch.tensor(rows)}, steps=3)
            pytest.fail(name)
    with pytest.raises(ValueError, match="mask_token_id"):
        infill_steps(ids)
    with pytest.raises(ValueError, match="AnyOrder or"):
        JointModel(JOINT)(State(x=ids, t=torch.zeros(2), done=torch.zeros(2, dtype=torch.bool)))
