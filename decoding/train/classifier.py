"""Training task of the Fashion-MNIST classifier of :mod:`decoding.evals.classifier` (minutes on a CPU).

Cross-entropy with label smoothing on the 60,000 training images, random shifts of up to
``max_shift`` pixels as augmentation; validation is the test-set cross-entropy and accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decoding.data.fashion_mnist import CLASSES, fashion_splits
from decoding.data.weights import save_model_folder
from decoding.evals.classifier import CLASSIFIER_FORMAT, FashionCNN
from decoding.io import atomic_write_bytes
from decoding.train.task import Task, require_each


def random_shift(x: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    """Shift each gray image ``(B, 1, H, W)`` by up to ``max_shift`` pixels; uncovered pixels are background (-1).

    ``generator`` lives on ``x``'s device.
    """
    b, _, h, w = x.shape
    dev = x.device
    pad = F.pad(x[:, 0], (max_shift,) * 4, value=-1.0)  # (B, H + 2m, W + 2m)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator, device=dev)
    rows = dy[:, None] + torch.arange(h, device=dev)[None, :]  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=dev)[None, :]  # (B, W)
    return pad[torch.arange(b, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]


def save_classifier_weights(net: FashionCNN, out: str | Path, test_accuracy: float | None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (float32) of the classifier, atomically."""
    config = {"kind": "classifier", "format": CLASSIFIER_FORMAT, "model": net.config, "classes": list(CLASSES), "input_range": [-1.0, 1.0],
              "test_accuracy": test_accuracy}
    return save_model_folder(out, net.state_dict(), config, metadata={"format": CLASSIFIER_FORMAT})


def save_classifier(net: FashionCNN, out: str | Path, log: dict[str, Any]) -> Path:
    """:func:`save_classifier_weights` (accuracy from ``log["test_accuracy"]``) and ``train_log.json`` (``log``)."""
    out = save_classifier_weights(net, out, log.get("test_accuracy"))
    atomic_write_bytes(out / "train_log.json", (json.dumps(log, indent=2) + "\n").encode())
    return out


@dataclass
class ClassifierConfig:
    """Options of the classifier task.

    Attributes:
        data: Fashion-MNIST folder (IDX files); default ``$DECODING_FASHION_MNIST`` or the Debian path.
        width, hidden, dropout: :class:`~decoding.evals.classifier.FashionCNN` sizes.
        max_shift: random shift augmentation in pixels.
        label_smoothing: of the training cross-entropy.
        limit_data: train on the first N images only (tests).
        val_limit: validate on the first N test images (default all 10,000).
    """

    data: str | None = None
    width: int = 32
    hidden: int = 128
    dropout: float = 0.3
    max_shift: int = 2
    label_smoothing: float = 0.05
    limit_data: int | None = None
    val_limit: int | None = None

    def check(self) -> None:
        require_each(self, ("width", "hidden", "limit_data", "val_limit"), lambda v: v is None or v >= 1, "be >= 1")
        require_each(self, ("max_shift",), lambda v: v >= 0, "be >= 0")
        require_each(self, ("label_smoothing", "dropout"), lambda v: 0.0 <= v < 1.0, "lie in [0, 1)")


class ClassifierTask(Task):
    """The Fashion-MNIST CNN; the shipped weights are the raw ones unless an EMA is asked for."""

    kind: ClassVar[str] = "classifier"
    SESSION: ClassVar[frozenset[str]] = frozenset({"data"})
    loss_name = "cross-entropy (nats)"

    def __init__(self, config: ClassifierConfig) -> None:
        config.check()
        self.config = config

    def setup(self, device: torch.device) -> dict[str, Any]:
        c = self.config
        (self.x, self.y), (self.val_x, self.val_y), info = fashion_splits(c.data, c.limit_data, c.val_limit, device)
        return info

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])

    def build(self) -> nn.Module:
        c = self.config
        return FashionCNN(width=c.width, hidden=c.hidden, dropout=c.dropout)

    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        x = random_shift(self.x[indices], generator, self.config.max_shift)
        return F.cross_entropy(net(x).float(), self.y[indices], label_smoothing=self.config.label_smoothing)

    def validate(self, net: nn.Module) -> dict[str, float]:
        total = torch.zeros((), device=self.val_x.device)
        correct = torch.zeros((), device=self.val_x.device)
        for x, y in zip(self.val_x.split(1000), self.val_y.split(1000), strict=True):
            logits = net(x).float()
            total += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(-1) == y).sum()
        n = int(self.val_x.shape[0])
        return {"loss": float(total) / n, "accuracy": float(correct) / n}

    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        assert isinstance(net, FashionCNN)
        valid = info["summary"].get("shipped_valid") or {}
        save_classifier_weights(net, out, valid.get("accuracy"))
        return [out / "config.json", out / "model.safetensors"]


if __name__ == "__main__":
    raise SystemExit("decoding.train.classifier is a training task: run `python -m decoding.train fashion-classifier ...` (see `decoding train --help`)")
