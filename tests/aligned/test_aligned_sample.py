"""The ASAp sampling API: the aligned constraint in the decode loop, trie files across runs, processors, bad input."""

from __future__ import annotations

import pytest
import torch

from decoding import decode
from decoding.aligned import ASAp, FiniteLanguage, generate_aligned, sample_aligned
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from decoding.processors.temperature import Temperature
from tests.aligned.toy import BIN_EOS, PrefixModel, UniformModel, binary_language

LANG = FiniteLanguage([(0,), (0, 1), (1, 2, 0), (2,), (2, 2)], vocab_size=4, eos_token_id=3)


def test_trie_file_persists_across_runs(tmp_path):
    path = tmp_path / "sub" / "trie.safetensors"
    kw = dict(num_samples=5, max_new_tokens=6, eos_token_id=3, trie=path, signature="toy", batch_size=2)
    model = PrefixModel(4, prompt_length=1, seed=1)
    first = generate_aligned(model, LANG.constraint, torch.tensor([0]), seed=0, **kw)
    assert path.is_file() and first.asap.samples == 5 and all(first.complete)
    second = generate_aligned(model, LANG.constraint, torch.tensor([[0]]), seed=1, **kw)
    assert second.asap.samples == 10 and second.nfe > 0
    assert all(tuple(s[:-1]) in LANG for s in first.sequences + second.sequences)
    with pytest.raises(ValueError, match="belongs to 'toy'"):
        generate_aligned(model, LANG.constraint, torch.tensor([0]), **{**kw, "signature": "other"})


def test_each_prompt_has_its_own_tree():
    model = PrefixModel(4, prompt_length=2, seed=2)
    asap = ASAp(3)
    prompts = torch.tensor([[0, 1], [0, 2], [0, 1]])
    out = sample_aligned(model, LANG.constraint(3), prompts, asap=asap, steps=6, seed=0)
    assert set(asap.trie.roots) == {(0, 1), (0, 2)}
    assert asap.samples == 3 and len(out.sequences) == 3


def test_asap_aligns_to_the_distribution_after_the_processors():
    model = PrefixModel(4, prompt_length=1, seed=3)
    asap = ASAp(3)
    out = sample_aligned(model, LANG.constraint(1), torch.tensor([[0]]), asap=asap, steps=6, seed=0,
                         processors=[Temperature(0.5)])  # fmt: skip
    first = out.sequences[0][0]
    tempered = torch.softmax(model.logits(()).double() / 0.5, 0)
    assert asap.trie.find((0,), (first,)).prob == pytest.approx(float(tempered[first]), rel=1e-6)


def test_truncated_samples_are_kept_and_leave_their_prefix_unknown():
    lang = binary_language()
    asap = ASAp(BIN_EOS)
    run = generate_aligned(UniformModel(3), lang.constraint, torch.tensor([0]), num_samples=3,
                           max_new_tokens=3, eos_token_id=BIN_EOS, trie=asap, seed=0)  # fmt: skip
    assert run.complete == [False] * 3 and all(len(s) == 3 for s in run.sequences)
    for s in run.sequences:
        assert asap.efg((0,), s) == 1.0  # never evaluated: still the constrained-decoding guess
    for s in run.sequences:  # evaluated prefixes know their allowed mass: 1/3 per allowed token
        assert asap.efg((0,), s[:2]) == pytest.approx(len(lang.allowed[tuple(s[:2])]) / 3, rel=1e-12)


def test_aligned_constraint_misuse_is_reported():
    lang = binary_language()
    asap = ASAp(BIN_EOS)
    proc = Autoregressive(eos_token_id=BIN_EOS, pad_token_id=BIN_EOS)
    prompt = torch.zeros(1, 1, dtype=torch.long)
    aligned = asap.constraint(lang.constraint(1))
    with pytest.raises(ValueError, match="never used"):
        aligned.finish()
    with pytest.raises(ValueError, match="advance before reweight"):
        aligned.advance(torch.tensor([0]))
    decode(UniformModel(3), proc, prompt, steps=6, constraint=aligned, seed=0)
    aligned.finish()
    with pytest.raises(ValueError, match="is finished"):
        aligned.finish()
    with pytest.raises(ValueError, match="is finished"):
        aligned.reweight(torch.zeros(1, 3), None)


def test_rollback_and_fork():
    """A fork taken after step 3 equals the constraint rolled back from step 5 by 2; rows match the decode."""
    lang = binary_language()
    asap = ASAp(BIN_EOS)
    proc = Autoregressive(eos_token_id=BIN_EOS, pad_token_id=BIN_EOS)
    prompt = torch.zeros(3, 1, dtype=torch.long)
    aligned = asap.constraint(lang.constraint(3))
    forks = {}
    res = decode(UniformModel(3), proc, prompt, steps=5, constraint=aligned, seed=5,
                 callback=lambda i, s, p: forks.setdefault(i, aligned.fork()))
    assert aligned._rows.tokens == generated_tokens(res.state)
    at3 = forks[2]._rows
    aligned.rollback(2)
    assert aligned._rows.tokens == at3.tokens and aligned._rows.finished == at3.finished
    assert [len(t) for t in at3.tokens] == [min(3, len(t)) for t in generated_tokens(res.state)]
    with pytest.raises(ValueError, match="cannot roll back 9"):
        aligned.rollback(9)
    assert forks[4].finish() == generated_tokens(res.state) and asap.samples == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_samples=0), "num_samples must be >= 1"),
        (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(prompt=torch.zeros(2, 1, dtype=torch.long)), "prompt must be"),
        (dict(eos_token_id=[]), "eos_token_id must be"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(prompt=torch.tensor([0]), num_samples=2, max_new_tokens=4, eos_token_id=BIN_EOS)
    args.update(kwargs)
    prompt = args.pop("prompt")
    with pytest.raises(ValueError, match=match):
        generate_aligned(UniformModel(3), binary_language().constraint, prompt, **args)


class _ToyLM:
    """A causal LM for ``decoding.generate``: a uniform model over the bytes "0", "1" and EOS."""

    kind = "causal-lm"
    name = "toy"
    engine = "toy"
    tokenizer = [b"0", b"1", None]
    eos_token_ids = (BIN_EOS,)
    pad_token_id = BIN_EOS
    device = torch.device("cpu")
    dtype = torch.float32
    max_context = 64
    model = UniformModel(3)

    def encode(self, prompts, chat=None):
        return {"input_ids": torch.zeros(len(prompts), 1, dtype=torch.long),
                "attention_mask": torch.ones(len(prompts), 1, dtype=torch.bool)}

    def decode(self, ids):
        return "".join(str(t) for t in ids if t != BIN_EOS)


def test_generate_aligned_with_a_trie_file(tmp_path):
    import decoding as dc

    path = tmp_path / "trie.safetensors"
    lm = _ToyLM()
    out = dc.generate(lm, "a binary string", n=6, max_new_tokens=8, grammar="binary", aligned=True, trie=path,
                      batch_size=3)
    assert out.finish_reason == ["eos"] * 6 and out.settings["trie_samples"] == 6
    assert all(t == "00000" or (len(t) == 5 and t[0] == "1") for t in out.text)
    again = dc.generate(lm, "a binary string", n=2, max_new_tokens=8, grammar="binary", aligned=True, trie=path)
    assert again.settings["trie_samples"] == 8
    with pytest.raises(ValueError, match="belongs to"):  # another grammar text: another distribution
        dc.generate(lm, "a binary string", max_new_tokens=4, grammar='start: "0" | "1"\n', aligned=True, trie=path)
