"""ASAp (arXiv 2405.21047) samples exactly its defined distribution and converges to the ideal one.

The binary grammar of the paper over {0, 1, EOS} with a uniform model: every sentence has model
probability 3^-6, so the ideal (the model conditioned on the grammar) is 1/17 per sentence, while
plain constrained decoding gives "00000" probability 1/2 (KL to the ideal 0.754 nats).

KL bound for ASAp's empirical distribution after N samples (a fixed seed, nothing can flake):

* Before every sentence has been seen, each sample is a new sentence with probability at least
  2/19: for a seen sentence the trie is consistent along its path, so ASAp gives it
  P(s) / c(root); hence P(new) = 1 - P(seen) / c(root) >= E / (Z + E), where Z = 17/729 and
  E = c(root) - Z >= 2/729 is the root's excess (an unvisited prefix at depth d keeps a
  surplus of at least 2/3 * 3^-(5-d), propagated by 3^-d). So the coverage time T is at most
  the number of Bernoulli(2/19) trials needed for 17 successes (a negative binomial).
* After coverage every estimate is exact and the samples are i.i.d. ideal, so
  2 (N - T) KL(post || ideal) is the G statistic, asymptotically chi-square with 16 degrees.
* KL is convex in its first argument and KL(anything || uniform_17) <= log 17, hence
  KL(empirical || ideal) <= (q / 2 + T log 17) / N with q the chi-square quantile.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chi2, nbinom, power_divergence

from decoding import decode
from decoding.aligned import ASAp, FiniteLanguage, distributions, empirical, generate_aligned, kl_divergence
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from tests.aligned.toy import BIN_EOS, PrefixModel, UniformModel, binary_language

PROMPT = (0,)
ALPHA = 1e-6  # tail probability of every statistical threshold
GCD_KL = 0.5 * math.log(8.5) + 0.5 * math.log(17 / 32)  # 0.7538 nats


def _run(model, lang, n, seed, batch_size=1, asap=None):
    asap = asap if asap is not None else ASAp(lang.eos_token_id)
    run = generate_aligned(
        model, lang.constraint, torch.tensor(PROMPT), num_samples=n, max_new_tokens=8,
        eos_token_id=lang.eos_token_id, batch_size=batch_size, trie=asap, seed=seed,
    )  # fmt: skip
    return asap, run.sequences


def _g_pvalue(freq: torch.Tensor, n: int, probs: torch.Tensor) -> float:
    return float(power_divergence((freq * n).numpy(), (probs * n).numpy(), lambda_="log-likelihood").pvalue)


def test_plain_constrained_decoding_is_distorted():
    lang = binary_language()
    n = 4000
    res = decode(
        UniformModel(3), Autoregressive(eos_token_id=BIN_EOS, pad_token_id=BIN_EOS),
        torch.zeros(n, 1, dtype=torch.long), steps=8, constraint=lang.constraint(n), seed=0,
    )  # fmt: skip
    freq = empirical(generated_tokens(res.state), lang)
    d = distributions(lang, UniformModel(3).logprobs)
    assert torch.allclose(d.ideal, torch.full((17,), 1 / 17, dtype=torch.float64), rtol=1e-12)
    assert d.constrained[0].item() == pytest.approx(0.5, rel=1e-12)
    assert kl_divergence(d.constrained, d.ideal) == pytest.approx(GCD_KL, rel=1e-12)
    assert _g_pvalue(freq, n, d.constrained) > ALPHA
    assert _g_pvalue(freq, n, d.ideal) < ALPHA  # the distortion is detectable at this n
    assert abs(kl_divergence(freq, d.ideal) - GCD_KL) < 0.05


def _lark_binary():
    """grammars/binary.lark compiled by decoding.grammar (issue 4) for the vocabulary {"0", "1", EOS}."""
    grammar = pytest.importorskip("decoding.grammar")
    compiled = grammar.compile_grammar("binary", [b"0", b"1", None], eos_token_id=BIN_EOS, warm_seconds=0)
    return lambda b: compiled.constraint(batch_size=b)


@pytest.mark.parametrize(
    "batch_size, n, source", [(1, 1500, "finite"), (8, 2000, "finite"), (4, 1500, "lark")]
)
def test_asap_converges_to_the_ideal_binary_distribution(batch_size, n, source):
    lang = binary_language()
    make = lang.constraint if source == "finite" else _lark_binary()
    asap = ASAp(BIN_EOS)
    seqs = generate_aligned(
        UniformModel(3), make, torch.tensor(PROMPT), num_samples=n, max_new_tokens=8,
        eos_token_id=BIN_EOS, batch_size=batch_size, trie=asap, seed=0,
    ).sequences  # fmt: skip
    seen: set = set()
    cover = next(i for i, s in enumerate(seqs) if seen.add(tuple(s)) or len(seen) == 17) + 1
    t = math.ceil(cover / batch_size) * batch_size  # the batch that completed coverage
    t_max = 17 + nbinom.ppf(1 - ALPHA, 17, 2 / 19) + batch_size
    assert cover <= t_max, (cover, t_max)
    d = distributions(lang, UniformModel(3).logprobs, asap=asap, prompt=PROMPT)
    assert kl_divergence(d.aligned, d.ideal) < 1e-12  # the trie is exact after coverage
    post = empirical(seqs[t:], lang)
    assert _g_pvalue(post, n - t, d.ideal) > ALPHA
    bound = (chi2.ppf(1 - ALPHA, 16) / 2 + t * math.log(17)) / n
    kl = kl_divergence(empirical(seqs, lang), d.ideal)
    assert kl <= bound, (kl, bound, t)
    assert bound < GCD_KL / 5


def test_sampling_follows_the_asap_distribution_of_a_frozen_trie():
    """One batch samples from the trie as it was at the start: an exact chi-square test against it."""
    lang = FiniteLanguage(
        [(0,), (0, 1), (0, 1, 2), (0, 2, 3, 1), (1,), (1, 1, 1), (1, 2), (2, 0, 0), (2, 0, 1, 3), (3, 3, 3, 3), (3, 0)],
        vocab_size=5, eos_token_id=4,
    )  # fmt: skip
    model = PrefixModel(5, prompt_length=1, seed=0, scale=1.0)
    asap, _ = _run(model, lang, 4, seed=1)  # a partly informed trie
    d = distributions(lang, model.logprobs, asap=asap, prompt=PROMPT)
    assert kl_divergence(d.aligned, d.ideal) > 0.05 and kl_divergence(d.aligned, d.constrained) > 0.05
    n = 12000
    _, seqs = _run(model, lang, n, seed=2, batch_size=n, asap=asap)
    freq = empirical(seqs, lang)
    assert _g_pvalue(freq, n, d.aligned) > ALPHA
    assert _g_pvalue(freq, n, d.constrained) < ALPHA and _g_pvalue(freq, n, d.ideal) < ALPHA


def test_asap_kl_falls_as_samples_accumulate_on_a_random_model():
    lang = FiniteLanguage(
        [(0,), (0, 1), (0, 1, 2), (0, 2, 3, 1), (1,), (1, 1, 1), (1, 2), (2, 0, 0), (2, 0, 1, 3), (3, 3, 3, 3), (3, 0)],
        vocab_size=5, eos_token_id=4,
    )  # fmt: skip
    model = PrefixModel(5, prompt_length=1, seed=0, scale=1.0)
    asap = ASAp(4)
    kls, seqs, done = [], [], 0
    for checkpoint in (0, 5, 20, 100, 300):
        if checkpoint > done:
            seqs += _run(model, lang, checkpoint - done, seed=checkpoint, asap=asap)[1]
            done = checkpoint
        d = distributions(lang, model.logprobs, asap=asap, prompt=PROMPT)
        kls.append(kl_divergence(d.aligned, d.ideal))
    gcd = kl_divergence(d.constrained, d.ideal)
    assert kls[0] == pytest.approx(gcd, rel=1e-9)  # an empty trie is plain constrained decoding
    assert all(a > b for a, b in zip(kls, kls[1:], strict=False)), kls
    assert {tuple(q[:-1]) for q in seqs} == set(lang.sequences)  # every sentence seen by now ...
    assert kls[-1] < 1e-12  # ... so every estimate is exact and ASAp samples the ideal distribution
    seqs += _run(model, lang, 1500, seed=7, batch_size=10, asap=asap)[1]
    emp = kl_divergence(empirical(seqs, lang), d.ideal)
    assert emp < gcd / 10, (emp, gcd)
