"""The noise -> tokens map through a teacher (arXiv 2412.17153, sec. 3.2): exact joint, KV cache, CFG, determinism."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from decoding.core.loop import decode
from decoding.dd.joint import JointAR, histogram, random_joint
from decoding.dd.pairs import map_noise
from decoding.dd.process import FlowTokens
from decoding.models.ar_image import ARImageModel, ARImageNet, class_tokens, guided
from decoding.models.vq import VQAutoencoder
from decoding.processes.autoregressive import Autoregressive
from tests.dd.helpers import TINY_AR, TINY_VQ

pytestmark = pytest.mark.one_thread


def test_the_map_reproduces_a_known_joint() -> None:
    """3 positions, 4 codes in R^2, a Dirichlet(2) joint: chi-square over the 64 sequences of 20,000 maps (fixed seed;
    p = 0.88 measured). Sampling each position from its marginal (tokens at once, no prefix) fails the same test."""
    k, n, samples = 4, 3, 20000
    joint = random_joint(k, n, torch.Generator().manual_seed(0))
    codes = torch.nn.functional.normalize(torch.randn(k, 2, generator=torch.Generator().manual_seed(1)), dim=-1)
    noise = torch.randn(samples, n, 2, generator=torch.Generator().manual_seed(5))
    prompt = {"input_ids": torch.zeros(samples, 1, dtype=torch.long), "noise": noise}
    res = decode(JointAR(joint), FlowTokens(codes), prompt, steps=n, seed=0)
    tokens = res.x[:, 1:]
    assert chisquare(histogram(tokens, k).numpy(), (joint.reshape(-1) * samples).numpy()).pvalue > 1e-3
    g = torch.Generator().manual_seed(3)
    marginals = [joint.sum(dim=tuple(j for j in range(n) if j != i)) for i in range(n)]
    independent = torch.stack([torch.multinomial(m, samples, replacement=True, generator=g) for m in marginals], 1)
    assert chisquare(histogram(independent, k).numpy(), (joint.reshape(-1) * samples).numpy()).pvalue < 1e-6
    again = decode(JointAR(joint), FlowTokens(codes), prompt, steps=n, seed=123).x[:, 1:]
    assert torch.equal(tokens, again)  # deterministic: the seed of the loop plays no part
    assert torch.equal(res.state.emitted, tokens[:, -1]) and res.nfe.eq(n).all()


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_kv_cache_steps_equal_the_full_pass(scale: float) -> None:
    """Every step's next-code logits (KV cache, one new token per call) equal one pass over the final sequence."""
    torch.manual_seed(0)
    net = ARImageNet(TINY_AR).eval()
    model = ARImageModel(net, scale)
    seen = []
    labels = torch.tensor([0, 3, 7, 10])  # 10 = unconditional
    res = decode(model, Autoregressive(), class_tokens(labels, TINY_AR), steps=TINY_AR.num_tokens, seed=1,
                 callback=lambda i, s, p: seen.append(p.logits))
    full = model.all_logits(res.x[:, :-1])  # (B, n, K)
    assert torch.allclose(torch.stack(seen, 1), full, atol=1e-5)
    assert res.nfe.eq(TINY_AR.num_tokens * (1 if scale == 1.0 else 2)).all()


def test_cfg_combines_the_conditional_and_null_class_calls() -> None:
    torch.manual_seed(1)
    net = ARImageNet(TINY_AR).eval()
    seq = torch.cat([class_tokens(torch.tensor([2, 5]), TINY_AR), torch.randint(0, 16, (2, 10))], 1)
    null = seq.clone()
    null[:, 0] = TINY_AR.null_id
    with torch.no_grad():
        c, u = net(seq)[0].log_softmax(-1), net(null)[0].log_softmax(-1)
    assert torch.allclose(ARImageModel(net, 3.0).all_logits(seq), u + 3.0 * (c - u), atol=1e-5)
    assert torch.allclose(guided(torch.cat([c, u]), 0.0), u)


def test_map_noise_is_deterministic_and_batch_independent() -> None:
    torch.manual_seed(2)
    codes = VQAutoencoder(TINY_VQ).codes.detach()
    model = ARImageModel(ARImageNet(TINY_AR).eval(), 1.5)
    noise = torch.randn(6, TINY_AR.num_tokens, TINY_VQ.code_dim, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    a = map_noise(model, codes, labels, noise, FlowTokens(codes).flow)
    assert a.shape == (6, TINY_AR.num_tokens) and a.dtype == torch.long
    assert torch.equal(a, map_noise(model, codes, labels, noise.clone(), FlowTokens(codes).flow))
    assert torch.equal(a[2:4], map_noise(model, codes, labels[2:4], noise[2:4], FlowTokens(codes).flow))
    with pytest.raises(ValueError, match="noise must be"):
        FlowTokens(codes).init({"input_ids": labels[:, None], "noise": noise[..., :2]}, torch.Generator())
