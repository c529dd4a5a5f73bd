"""AS-ARM training runs on CPU, learns a simple stream, and writes a complete model folder."""

from __future__ import annotations

import json
import math

import pytest
import torch

from decoding.cli.train import train_main
from decoding.nn.any_subset import HIDDEN, AnySubsetLM
from decoding.train.as_arm import AsArmConfig, training_batch
from decoding.train.task import TrainOptions
from tests.train.helpers import token_file


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
    data = token_file(tmp_path / "tokens.safetensors")
    out = tmp_path / "as-arm-test"
    args = ["--data", str(data), "--out", str(out), "--checkpoint", str(tmp_path / "ck"), "--steps", "40", "--seq-len", "16",
            "--batch-size", "16", "--dim", "32", "--layers", "2", "--heads", "2", "--lr", "1e-2", "--warmup", "5",
            "--val-every", "20", "--eval-windows", "32", "--device", "cpu", "--threads", "1", "--no-progress",
            "--no-keep-best", "--ema-decay", "0.5"]
    assert train_main("as-arm-brown", args) == 0
    log = json.loads((out / "train_log.json").read_text())
    valid = log["history"]["valid"]
    assert abs(valid[0]["loss"] - math.log(16)) < 0.3  # untrained: about uniform
    assert valid[-1]["loss"] < valid[0]["loss"] - 0.7 and log["steps"] == 40
    for name in ("config.json", "model.safetensors", "train_log.json", "README.md"):
        assert (out / name).is_file()
        assert (out / name).stat().st_size <= 16 * 2**20
    card = (out / "README.md").read_text()
    assert "decoding train as-arm-brown" in card and "40 steps" in card
    assert json.loads((out / "config.json").read_text())["model_type"] == "as-arm"
    model = AnySubsetLM.from_pretrained(out)
    assert model.vocab_size == 16


def test_bad_training_options():
    with pytest.raises(ValueError, match="--l2r-fraction"):
        AsArmConfig(l2r_fraction=2.0).check()
    with pytest.raises(ValueError, match="--keep-best"):
        TrainOptions(steps=1, keep_best=True).check()
