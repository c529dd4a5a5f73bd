"""AS-ARM training runs on CPU, learns a simple stream, and writes a complete model folder."""

from __future__ import annotations

import json
import math

import pytest
import torch

from decoding.data.safetensors_lite import save_file
from decoding.nn.any_subset import HIDDEN, AnySubsetLM
from decoding.train.as_arm import TrainConfig, train, training_batch


def _token_file(path, vocab=16):
    g = torch.Generator().manual_seed(0)
    # a stream with structure: runs of an ascending pattern with random starting points
    starts = torch.randint(0, vocab, (4000,), generator=g)
    stream = ((starts[:, None] + torch.arange(8)) % vocab).flatten().to(torch.int32)
    meta = {"corpus": "synthetic", "vocab_size": str(vocab), "eot_id": "2", "tokenizer": "none"}
    save_file({"train": stream[:28000], "valid": stream[28000:]}, path, metadata=meta)
    return path


def test_training_batch_is_a_valid_split():
    g = torch.Generator().manual_seed(0)
    w = torch.randint(0, 50, (64, 12), generator=g)
    q, labels = training_batch(w, g, l2r_fraction=0.5)
    t = q.query_pos.shape[1]
    for r in range(64):
        n_t = int((labels[r] >= 0).sum())
        visible = q.rank[r] == 0
        assert int(visible.sum()) == 12 - n_t  # every position is visible or a target
        pos = q.query_pos[r, :n_t]
        assert sorted(pos.tolist()) == sorted(torch.nonzero(~visible).flatten().tolist())
        assert torch.equal(q.rank[r, pos], torch.arange(1, n_t + 1))  # chain ranks follow the order
        assert torch.equal(q.query_rank[r, :n_t], torch.arange(1, n_t + 1))
        assert torch.equal(labels[r, :n_t], w[r, pos])
        assert (labels[r, n_t:] == -100).all() and n_t <= t
    assert (q.rank < HIDDEN).all()


def test_train_learns_and_writes_the_folder(tmp_path):
    data = _token_file(tmp_path / "tokens.safetensors")
    out = tmp_path / "as-arm-test"
    cfg = TrainConfig(data=str(data), out=str(out), minutes=2, max_steps=40, seq_len=16, batch=16, dim=32, layers=2,
                      heads=2, lr=1e-2, warmup=5, eval_every=20, eval_windows=32, device="cpu", threads=1, progress=False)
    log = train(cfg)
    assert abs(log["valid"][0]["loss"] - math.log(16)) < 0.3  # untrained: about uniform
    assert log["valid"][-1]["loss"] < log["valid"][0]["loss"] - 0.7 and log["summary"]["steps"] == 40
    for name in ("config.json", "model.safetensors", "log.json", "README.md"):
        assert (out / name).is_file()
        assert (out / name).stat().st_size <= 16 * 2**20
    card = (out / "README.md").read_text()
    assert "python -m decoding.train.as_arm" in card and "40 steps" in card
    assert json.loads((out / "config.json").read_text())["model_type"] == "as-arm"
    model = AnySubsetLM.from_pretrained(out)
    assert model.vocab_size == 16


def test_bad_training_options(tmp_path):
    with pytest.raises(ValueError, match="l2r_fraction"):
        train(TrainConfig(data="x", l2r_fraction=2.0))
    with pytest.raises(FileNotFoundError, match="token file"):
        train(TrainConfig(data=str(tmp_path / "missing.safetensors")))
