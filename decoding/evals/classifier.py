"""A small Fashion-MNIST CNN classifier, trained by us, to check class-conditional samples.

``class_accuracy(images, labels)`` says how often the classifier sees the asked class in
generated images (a sanity measure of conditioning, not a quality metric on its own). The
classifier's own test accuracy is on its card, ``models/fashion-classifier/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from decoding.models.image import CheckpointError, resolve_checkpoint

CLASSIFIER_FORMAT = "decoding-fashion-classifier"


class FashionCNN(nn.Module):
    """``(B, 1, 28, 28)`` images in [-1, 1] -> ``(B, 10)`` logits.

    Two blocks of two 3x3 convolutions (batch norm, ReLU) with 2x2 max-pooling, then a small MLP.
    """

    def __init__(self, width: int = 32, hidden: int = 128, num_classes: int = 10, dropout: float = 0.3) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.config = {"width": width, "hidden": hidden, "num_classes": num_classes, "dropout": dropout}
        self.features = nn.Sequential(
            *block(1, width), *block(width, width), nn.MaxPool2d(2),
            *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * 49, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def to_model_range(images: Tensor) -> Tensor:
    """uint8 ``(N, 28, 28)`` / ``(N, 1, 28, 28)`` in [0, 255], or float in [-1, 1] -> float ``(N, 1, 28, 28)`` in [-1, 1]."""
    x = images
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected gray images (N, 28, 28) or (N, 1, 28, 28), got {tuple(images.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1.0
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got {x.dtype}")
    return x.float().clamp(-1, 1)


def load_classifier(path_or_name: str | Path = "fashion-classifier", device: str | torch.device = "cpu") -> FashionCNN:
    """Load the shipped classifier (``models/fashion-classifier``) or another folder."""
    folder = resolve_checkpoint(path_or_name)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file() or not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{folder} needs config.json and model.safetensors (train one with `decoding train fashion-classifier --out FOLDER`)")
    config = json.loads(cfg_path.read_text())
    if config.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{cfg_path}: format is {config.get('format')!r}, expected {CLASSIFIER_FORMAT!r}")
    net = FashionCNN(**config["model"])
    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = set(net.state_dict()) - set(state), set(state) - set(net.state_dict())
    bad_shape = [k for k in set(state) & set(net.state_dict()) if state[k].shape != net.state_dict()[k].shape]
    if missing or unexpected or bad_shape:
        raise CheckpointError(
            f"{folder}/model.safetensors does not match its config.json: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}, shape mismatches {sorted(bad_shape)[:3]}"
        )
    net.load_state_dict(state)
    return net.to(device).eval()


@torch.inference_mode()
def predict(net: nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """``(N,)`` predicted class of each image (uint8 or float in [-1, 1], see :func:`to_model_range`)."""
    dev = next(net.parameters()).device
    out = []
    for i in range(0, images.shape[0], batch_size):
        out.append(net(to_model_range(images[i : i + batch_size]).to(dev)).argmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def class_accuracy(net: nn.Module, images: Tensor, labels: Tensor | int) -> float:
    """Fraction of ``images`` that ``net`` assigns to ``labels`` (one per image, or one for all)."""
    pred = predict(net, images)
    target = torch.as_tensor(labels).long().reshape(-1).expand(pred.shape[0]) if torch.as_tensor(labels).numel() == 1 else torch.as_tensor(labels).long()
    if target.shape != pred.shape:
        raise ValueError(f"need one label per image ({pred.shape[0]}), got {target.numel()}")
    return float((pred == target.cpu()).float().mean()) if pred.numel() else float("nan")
