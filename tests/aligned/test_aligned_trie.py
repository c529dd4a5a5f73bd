"""ASAp's trie updates (arXiv 2405.21047) against hand-computed values, and its invariants."""

from __future__ import annotations

import math

import pytest
import torch

from decoding import decode
from decoding.aligned import ASAp, PrefixTrie, distributions, generate_aligned
from decoding.core.types import Prediction
from decoding.processes.autoregressive import Autoregressive
from tests.aligned.toy import BIN_EOS, PrefixModel, UniformModel, binary_language

PROMPT = (0,)


def _sample(asap: ASAp, model, lang, n: int, seed: int, batch_size: int = 1):
    return generate_aligned(
        model,
        lang.constraint,
        torch.tensor(PROMPT),
        num_samples=n,
        max_new_tokens=12,
        eos_token_id=lang.eos_token_id,
        batch_size=batch_size,
        trie=asap,
        seed=seed,
    )


def test_update_after_00000_matches_hand_computation():
    """Uniform model over {0,1,EOS}: after sampling "00000", c("0"*k) = 3^-(6-k) and c(root) = 1/3 + 1/729."""
    lang = binary_language()
    asap = ASAp(BIN_EOS)
    # a model that cannot say "1" first forces the first sample to be 00000 (then uniform)
    aligned = asap.constraint(lang.constraint(1))
    logits_first = torch.tensor([[0.0, -1e9, 0.0]])

    class Forced:
        def __call__(self, state):
            return Prediction(logits=torch.zeros(1, 3) if state.step else logits_first)

    decode(
        Forced(),
        Autoregressive(eos_token_id=BIN_EOS, pad_token_id=BIN_EOS),
        torch.tensor([PROMPT]),
        steps=8,
        constraint=aligned,
        seed=0,
    )
    assert aligned.finish() == [[0, 0, 0, 0, 0, BIN_EOS]]
    for k in range(1, 6):
        assert asap.efg(PROMPT, (0,) * k) == pytest.approx(3.0 ** -(6 - k), rel=1e-12)
    # the root was evaluated by the forced model: P(0) = 1/2, P(1) ~ 0, so c(root) = 1/2 * 3^-5
    assert asap.efg(PROMPT, ()) == pytest.approx(0.5 / 243, rel=1e-9)
    assert asap.efg(PROMPT, (1,)) == 1.0  # never visited

    # ASAp's next distribution under the uniform model now puts 1/244 on "0" first
    q = asap.next_token_probs(PROMPT, (), torch.full((3,), -math.log(3)), torch.tensor([True, True, False]))
    assert q.tolist() == pytest.approx([1 / 244, 243 / 244, 0.0], rel=1e-12)


def test_estimates_are_upper_bounds_that_only_shrink_and_become_exact():
    lang = binary_language()
    model = UniformModel(3)
    asap = ASAp(BIN_EOS)
    prefixes = sorted({s[:i] for s in lang.sequences for i in range(len(s) + 1)})
    true = {
        p: sum(3.0 ** -(len(s) + 1 - len(p)) for s in lang.sequences if s[: len(p)] == p) for p in prefixes
    }
    prev = {p: 1.0 for p in prefixes}
    for seed in range(60):
        _sample(asap, model, lang, 1, seed)
        for p in prefixes:
            c = asap.efg(PROMPT, p)
            assert c >= true[p] * (1 - 1e-12), (p, c, true[p])
            assert c <= prev[p] * (1 + 1e-12), (p, c, prev[p])
            prev[p] = c
    assert asap.num_nodes == len(prefixes) + len(lang)  # every prefix and every EOS leaf was visited
    for p in prefixes:
        assert asap.efg(PROMPT, p) == pytest.approx(true[p], rel=1e-12)
    d = distributions(lang, model.logprobs, asap=asap, prompt=PROMPT)
    assert torch.allclose(d.aligned, d.ideal, rtol=1e-12, atol=0)


def test_batch_update_order_does_not_change_the_estimates():
    lang = binary_language()
    model = PrefixModel(3, prompt_length=1, seed=3)
    a = ASAp(BIN_EOS)
    run = _sample(a, model, lang, 16, seed=1, batch_size=16)  # one batch: all rows from the empty trie
    # replay the same 16 paths into a fresh trie in reversed row order
    b = ASAp(BIN_EOS)
    b.trie = _copy_structure(a.trie)
    b.update([PROMPT] * 16, list(reversed(run.sequences)))
    for (pa, na), (pb, nb) in zip(a.trie.nodes(), b.trie.nodes(), strict=True):
        assert pa == pb and na.token == nb.token
        assert nb.efg == pytest.approx(na.efg, rel=1e-14, abs=0)


def _copy_structure(trie: PrefixTrie) -> PrefixTrie:
    """The same nodes (probabilities, masses) with every estimate reset to 1."""
    out = PrefixTrie()
    stack = [(out.root(p), r) for p, r in trie.roots.items()]
    while stack:
        dst, src = stack.pop()
        dst.mass, dst.n_allowed = src.mass, src.n_allowed
        for t, c in src.children.items():
            stack.append((dst.child(t, c.prob, c.terminal), c))
    return out


def test_update_refuses_paths_it_never_saw():
    asap = ASAp(BIN_EOS)
    with pytest.raises(ValueError, match="no trie for this prompt"):
        asap.update([PROMPT], [[0, 0]])
    asap.trie.root(PROMPT)
    with pytest.raises(ValueError, match="never visited"):
        asap.update([PROMPT], [[0, 0]])
    with pytest.raises(ValueError, match="2 prompts for 1 sequences"):
        asap.update([PROMPT, PROMPT], [[0]])
