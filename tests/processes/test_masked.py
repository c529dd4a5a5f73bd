"""Absorbing diffusion (decoding.processes.masked) against a model with exact conditionals of a known joint.

The exact law of a diffusion sampler is computed here by dynamic programming over the
``(V + 1)^L`` partly masked states (written independently of the implementation, from the
update rules of SEDD arXiv:2310.16834 / MDLM arXiv:2406.07524 / RADD arXiv:2406.03736), then:
the implementation's samples follow that law (chi-square at a fixed seed), the law approaches
the joint as steps grow, and the any-order sampler (one position per step) is exact.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from decoding.core.loop import decode
from decoding.processes.masked import SAMPLERS, Masked
from decoding.processes.masked_joint import JointConditionals, all_sequences, histogram, random_joint

V, L = 3, 3
M = V  # mask id
N_MC = 30_000
P_MIN = 1e-3  # fixed seeds: the p-values are fixed numbers; a wrong sampler gives ~0


@pytest.fixture(scope="module")
def joint() -> torch.Tensor:
    return random_joint(V, L, torch.Generator().manual_seed(1234), zeros=0.2)


# ----------------------------------------------------------------- exact law by dynamic programming
def _mask_prob(schedule: str, t: float) -> float:
    if schedule == "loglinear":
        return t
    if schedule == "cosine":
        return math.sin(math.pi * t / 2)
    k = float(schedule.split(":")[1])
    return t**k


def _q(sampler: str, schedule: str, t: float, s: float) -> float:
    """Unmasking probability of one step, from the papers' formulas (independent of the package)."""
    if s == 0:
        return 1.0
    eps = 1e-7  # m'(t) by a central difference
    dm = (_mask_prob(schedule, min(1.0, t + eps)) - _mask_prob(schedule, t - eps)) / (min(1.0, t + eps) - (t - eps))
    rate = dm / _mask_prob(schedule, t)
    if sampler == "tweedie":
        return (_mask_prob(schedule, t) - _mask_prob(schedule, s)) / _mask_prob(schedule, t)
    if sampler == "euler":
        return min(1.0, (t - s) * rate)
    return 1.0 - math.exp(-(t - s) * rate)


def _states() -> list[tuple[int, ...]]:
    return list(itertools.product(range(V + 1), repeat=L))


def _exact_law(model: JointConditionals, sampler: str, schedule: str, steps: int) -> torch.Tensor:
    """``(V^L,)`` law of the final sample of the diffusion sampler, by DP over partly masked states."""
    states = _states()
    index = {s: i for i, s in enumerate(states)}
    cond = model.conditionals(torch.tensor(states)).double()  # (S, L, V)
    n = len(states)
    coef = torch.zeros(n, n, dtype=torch.float64)  # product of conditionals of the newly filled positions
    k = torch.zeros(n, n, dtype=torch.float64)
    m = torch.zeros(n, n, dtype=torch.float64)
    for i, s in enumerate(states):
        masked = [p for p in range(L) if s[p] == M]
        for r in range(len(masked) + 1):
            for subset in itertools.combinations(masked, r):
                for toks in itertools.product(range(V), repeat=r):
                    nxt = list(s)
                    w = 1.0
                    for p, tok in zip(subset, toks, strict=True):
                        nxt[p] = tok
                        w *= float(cond[i, p, tok])
                    j = index[tuple(nxt)]
                    coef[i, j] += w
                    k[i, j], m[i, j] = r, len(masked)
    law = torch.zeros(n, dtype=torch.float64)
    law[index[(M,) * L]] = 1.0
    ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
    for a, b in itertools.pairwise(ts):
        q = _q(sampler, schedule, a, b)
        trans = coef * (q**k) * ((1 - q) ** (m - k))
        law = law @ trans
    complete = [index[s] for s in itertools.product(range(V), repeat=L)]
    return law[complete]


def _sample(model, sampler: str, schedule: str, steps: int, seed: int, n: int = N_MC, order=None) -> torch.Tensor:
    proc = Masked(mask_id=M, length=L, sampler=sampler, noise=schedule, order=order)
    res = decode(model, proc, n, steps=steps, seed=seed)
    assert bool(res.state.done.all()) and not bool((res.x == M).any())
    return res.x


def _chi2_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    keep = probs > 0
    assert int(counts[~keep].sum()) == 0, "sampled a sequence of probability 0"
    exp = probs[keep] / probs[keep].sum() * counts.sum()
    return float(chisquare(counts[keep].double().numpy(), exp.numpy()).pvalue)


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("order", [None, [2, 0, 1]])
def test_any_order_sampler_reproduces_the_joint(joint, order) -> None:
    model = JointConditionals(joint)
    x = _sample(model, "any_order", "loglinear", steps=L, seed=7, order=order)
    assert model.calls == L  # one position per step
    assert _chi2_p(histogram(x, V), joint.reshape(-1)) > P_MIN


def test_any_order_detects_a_wrong_joint(joint) -> None:
    """The chi-square test has power: samples of the joint are rejected against a perturbed joint."""
    x = _sample(JointConditionals(joint), "any_order", "loglinear", steps=L, seed=7)
    other = joint.reshape(-1) * torch.linspace(0.9, 1.1, V**L, dtype=torch.float64)
    assert _chi2_p(histogram(x, V), other / other.sum()) < 1e-6


@pytest.mark.parametrize(
    ("sampler", "schedule", "steps"),
    [("tweedie", "loglinear", 2), ("euler", "cosine", 3), ("exact_rate", "loglinear", 3), ("tweedie", "poly:2", 4)],
)
def test_diffusion_samples_follow_the_exact_sampler_law(joint, sampler, schedule, steps) -> None:
    law = _exact_law(JointConditionals(joint), sampler, schedule, steps)
    tv_joint = 0.5 * float((law - joint.reshape(-1)).abs().sum())
    assert tv_joint > 0.01  # few steps: the law is measurably not the joint, so the test below is specific
    x = _sample(JointConditionals(joint), sampler, schedule, steps, seed=11)
    assert _chi2_p(histogram(x, V), law) > P_MIN


@pytest.mark.parametrize("sampler", ["tweedie", "euler", "exact_rate"])
def test_diffusion_law_approaches_the_joint_as_steps_grow(joint, sampler) -> None:
    model = JointConditionals(joint)
    tvs = [
        0.5 * float((_exact_law(model, sampler, "loglinear", n) - joint.reshape(-1)).abs().sum())
        for n in (1, 4, 16, 64, 256)
    ]
    assert all(a > b for a, b in itertools.pairwise(tvs)), tvs
    assert tvs[-1] < 0.01 and tvs[-1] < tvs[0] / 20, tvs


def test_infill_keeps_given_positions_and_samples_the_conditional(joint) -> None:
    model = JointConditionals(joint)
    template = torch.tensor([M, 1, M])
    seen = []
    proc = Masked(mask_id=M, sampler="any_order")
    res = decode(model, proc, template.expand(N_MC, L).clone(), steps=2, seed=5,
                 callback=lambda i, s, p: seen.append(s.x[:, 1].clone()))
    assert all(bool((v == 1).all()) for v in seen) and bool((res.x[:, 1] == 1).all())
    cond = joint[:, 1, :].reshape(-1)
    counts = histogram(res.x[:, [0, 2]], V)
    assert _chi2_p(counts, cond / cond.sum()) > P_MIN


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_prefix_suffix_infill_never_change(sampler) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 10, 7, generator=g)
    model = lambda s: __import__("decoding").Prediction(logits=logits.expand(s.batch_size, -1, -1))
    tpl = torch.full((4, 10), 7)
    tpl[:, :3] = torch.tensor([1, 2, 3])
    tpl[:, -2:] = torch.tensor([4, 5])
    res = decode(model, Masked(mask_id=7, sampler=sampler), tpl, steps=5, seed=1)
    assert torch.equal(res.x[:, :3], tpl[:, :3]) and torch.equal(res.x[:, -2:], tpl[:, -2:])
    assert not bool((res.x == 7).any())


def test_mask_column_is_never_sampled() -> None:
    logits = torch.zeros(2, 6, 5)
    logits[..., 4] = 50.0  # the mask id 4 dominates the logits
    model = lambda s: __import__("decoding").Prediction(logits=logits)
    res = decode(model, Masked(mask_id=4, length=6), 2, steps=3, seed=0)
    assert not bool((res.x == 4).any())


def test_any_order_spreads_groups_when_fewer_steps() -> None:
    counts = []
    model = JointConditionals(random_joint(2, 5, torch.Generator().manual_seed(0), zeros=0.0))
    proc = Masked(mask_id=2, length=5, sampler="any_order")
    decode(model, proc, 4, steps=2, seed=0, callback=lambda i, s, p: counts.append(int((s.x == 2).sum(-1)[0])))
    assert counts == [3, 0]  # ceil(5 * 0.5) blanks left after the first of two steps


def test_a_process_mask_id_that_is_not_the_models_is_refused() -> None:
    """A mask id the model reads as a token (here token 1 of a 2-token vocabulary whose mask is 2) sampled silently;
    ``decode`` now names both ids before the first step."""
    model = JointConditionals(random_joint(2, 3, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=r"process's mask id 1 is not the model's \(2\).*mask_id=2"):
        decode(model, Masked(mask_id=1), torch.tensor([0, 1, 1]), steps=2)
    decode(model, Masked(mask_id=2), torch.tensor([0, 2, 2]), steps=2)  # the model's own id runs


def test_bad_input_errors() -> None:
    model = JointConditionals(random_joint(2, 3, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="no blank"):
        decode(model, Masked(mask_id=2), torch.tensor([0, 1, 0]), steps=2)
    with pytest.raises(ValueError, match="context is 4"):
        decode(model, Masked(mask_id=2, max_length=4), torch.full((5,), 2), steps=2)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        Masked(mask_id=2).schedule(0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        decode(model, Masked(mask_id=2, length=3), 1, steps=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        Masked(mask_id=2, sampler="ddpm")
    with pytest.raises(ValueError, match="unknown noise schedule"):
        Masked(mask_id=2, noise="linear-ish")
    with pytest.raises(ValueError, match="poly:K"):
        Masked(mask_id=2, noise="poly:x")
    with pytest.raises(ValueError, match="permutation"):
        decode(model, Masked(mask_id=2, length=3, sampler="any_order", order=[0, 0, 1]), 1, steps=3)
    with pytest.raises(ValueError, match="only applies"):
        Masked(mask_id=2, sampler="tweedie", order=[0, 1, 2])
    with pytest.raises(ValueError, match="needs Masked"):
        decode(model, Masked(mask_id=2), 3, steps=2)
    with pytest.raises(ValueError, match="per-position logits"):
        decode(lambda s: __import__("decoding").Prediction(logits=torch.zeros(1, 2)), Masked(mask_id=2, length=3), 1, steps=2)


def test_all_sequences_order() -> None:
    seqs = all_sequences(3, 2)
    assert seqs[5].tolist() == [1, 2] and seqs.shape == (9, 2)
