"""Saving and loading the ASAp trie: exact round trip, versioned format, clear errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from decoding.aligned import FORMAT, ASAp, FiniteLanguage, distributions, generate_aligned
from tests.aligned.toy import PrefixModel

LANG = FiniteLanguage([(0,), (0, 1), (1, 2, 0), (2,), (2, 2)], vocab_size=4, eos_token_id=3)
MODEL = PrefixModel(4, prompt_length=2, seed=5, scale=1.0)


def _grow(asap: ASAp, prompt: tuple[int, ...], n: int, seed: int, batch_size: int = 3) -> list[list[int]]:
    return generate_aligned(
        MODEL, LANG.constraint, torch.tensor(prompt), num_samples=n, max_new_tokens=6,
        eos_token_id=3, batch_size=batch_size, trie=asap, seed=seed,
    ).sequences  # fmt: skip


def _snapshot(asap: ASAp) -> list[tuple]:
    """Every node's fields in preorder (NaN written as None so that equal tries compare equal)."""

    def f(x: float) -> float | None:
        return None if math.isnan(x) else x

    return [(p, n.token, f(n.prob), n.efg, f(n.mass), n.n_allowed, n.terminal) for p, n in asap.trie.nodes()]


def test_round_trip_is_exact_and_sampling_continues_identically(tmp_path):
    a = ASAp(3, signature="toy")
    _grow(a, (0, 1), 7, seed=0)
    _grow(a, (1, 1), 4, seed=1)  # a second prompt: a second tree
    path = tmp_path / "trie.safetensors"
    a.save(path)
    b = ASAp.load(path, signature="toy", eos_token_id=3)
    assert b.samples == a.samples == 11 and b.eos_token_ids == (3,)
    assert set(b.trie.roots) == {(0, 1), (1, 1)}
    assert _snapshot(a) == _snapshot(b)
    da = distributions(LANG, MODEL.logprobs, asap=a, prompt=(0, 1)).aligned
    db = distributions(LANG, MODEL.logprobs, asap=b, prompt=(0, 1)).aligned
    assert torch.equal(da, db)
    assert _grow(a, (0, 1), 6, seed=9) == _grow(b, (0, 1), 6, seed=9)
    assert _snapshot(a) == _snapshot(b)


def test_batches_are_deterministic(tmp_path):
    runs = []
    for _ in range(2):
        a = ASAp(3)
        seqs = _grow(a, (0, 1), 24, seed=4, batch_size=8)
        a.save(tmp_path / "t.safetensors")
        runs.append((seqs, load_file(str(tmp_path / "t.safetensors"))))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1].keys() == runs[1][1].keys()
    for k in runs[0][1]:
        assert torch.equal(runs[0][1][k].nan_to_num(-7.0), runs[1][1][k].nan_to_num(-7.0)), k


def test_reset_forgets_everything():
    a = ASAp(3)
    _grow(a, (0, 1), 5, seed=0)
    assert a.num_nodes > 1 and a.samples == 5
    a.reset()
    assert a.num_nodes == 0 and a.samples == 0 and a.efg((0, 1), (0,)) == 1.0


def test_bad_files_give_clear_errors(tmp_path):
    a = ASAp(3, signature="model-a + grammar-x")
    _grow(a, (0, 1), 3, seed=0)
    path = tmp_path / "trie.safetensors"
    a.save(path)
    with pytest.raises(ValueError, match="belongs to 'model-a \\+ grammar-x'"):
        ASAp.load(path, signature="model-b")
    with pytest.raises(ValueError, match="EOS ids"):
        ASAp.load(path, eos_token_id=[2])
    with pytest.raises(FileNotFoundError):
        ASAp.load(tmp_path / "missing.safetensors")
    tensors = load_file(str(path))
    save_file(tensors, str(tmp_path / "v2.safetensors"), metadata={"format": FORMAT, "version": "2",
              "eos_token_ids": json.dumps([3]), "signature": "", "samples": "3"})  # fmt: skip
    with pytest.raises(ValueError, match="version '2'"):
        ASAp.load(tmp_path / "v2.safetensors")
    save_file(tensors, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not an ASAp trie file"):
        ASAp.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="cannot read the trie file"):
        ASAp.load(tmp_path / "junk.safetensors")
