"""The Fashion-MNIST classifier: the shipped weights' accuracy, loading errors, a training smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from decoding.cli.train import train_main
from decoding.evals.classifier import FashionCNN, class_accuracy, load_classifier, predict, to_model_range
from decoding.models.image import CheckpointError, models_root
from decoding.train.classifier import random_shift, save_classifier
from tests.train.helpers import fashion_folder

HAVE_DATA = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file()
SHIPPED = models_root() / "fashion-classifier"


def test_shapes_and_input_ranges() -> None:
    net = FashionCNN().eval()
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    u8 = torch.tensor([[[0, 255]]], dtype=torch.uint8).expand(1, 28, 2)
    assert torch.equal(to_model_range(u8)[0, 0, 0], torch.tensor([-1.0, 1.0]))
    with pytest.raises(ValueError, match="gray images"):
        to_model_range(torch.zeros(2, 3, 28, 28))


def test_random_shift_moves_content_and_fills_background() -> None:
    x = torch.full((4, 1, 28, 28), -1.0)
    x[:, :, 14, 14] = 1.0
    out = random_shift(x, torch.Generator().manual_seed(0), max_shift=2)
    assert out.shape == x.shape and torch.equal((out == 1.0).sum((1, 2, 3)), torch.ones(4, dtype=torch.long))
    pos = (out[:, 0] == 1.0).nonzero()[:, 1:]
    assert ((pos - 14).abs() <= 2).all()


def test_training_smoke_and_save_load(tmp_path: Path) -> None:
    data = fashion_folder(tmp_path / "data", n_train=256, n_test=64)
    args = ["--data", str(data), "--steps", "8", "--batch-size", "64", "--val-every", "4", "--device", "cpu",
            "--no-progress", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "clf")]
    assert train_main("fashion-classifier", args) == 0
    cfg = json.loads((tmp_path / "clf" / "config.json").read_text())
    log = json.loads((tmp_path / "clf" / "train_log.json").read_text())
    assert 0.0 <= cfg["test_accuracy"] <= 1.0 and cfg["test_accuracy"] == log["history"]["valid"][-1]["accuracy"]
    loaded = load_classifier(tmp_path / "clf")
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    assert predict(loaded, x).shape == (5,)
    save_classifier(loaded, tmp_path / "again", {"test_accuracy": 0.5})
    assert torch.equal(predict(load_classifier(tmp_path / "again"), x), predict(loaded, x))
    cfg["model"]["width"] = 16
    (tmp_path / "clf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match its config.json"):
        load_classifier(tmp_path / "clf")


@pytest.mark.skipif(not (HAVE_DATA and SHIPPED.is_dir()), reason="needs the dataset and models/fashion-classifier")
def test_shipped_classifier_accuracy_matches_its_card() -> None:
    from decoding.data.fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    net = load_classifier("fashion-classifier")
    acc = class_accuracy(net, images[:2000], labels[:2000])
    card = json.loads((SHIPPED / "config.json").read_text())["test_accuracy"]
    assert acc >= 0.90 and abs(acc - card) < 0.02
    assert class_accuracy(net, images[:200], 3) < 0.5  # a wrong constant label is mostly wrong
