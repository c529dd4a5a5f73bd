"""Rewards ``r(x_0) -> (B,)`` for inference-time steering, and the check every reward call goes through.

:class:`ClassifierReward` is the log-probability of a class under the shipped Fashion-MNIST
classifier (``models/fashion-classifier``): with ``lam = 1`` the tilted target
``p(x) exp(lam r(x)) = p(x) p(y | x)`` is the class-conditional distribution ``p(x | y)`` of an
unconditional model (class steering, as in the DTS paper's MNIST / CIFAR-10 experiments,
arXiv 2506.20701). Any callable ``r(x0) -> (B,)`` is a reward.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

Reward = Callable[[Tensor], Tensor]


class ClassifierReward:
    """``r(x0) = log p(label | x0)`` under a classifier of ``(B, 1, 28, 28)`` images in [-1, 1].

    Args:
        label: the class to steer towards.
        classifier: a loaded ``nn.Module`` (logits ``(B, classes)``) or a folder / zoo name for
            :func:`decoding.evals.classifier.load_classifier`.
        device: where a classifier given by name is loaded (default: the CPU; inputs are moved to it).
    """

    def __init__(self, label: int, classifier: nn.Module | str | Path = "fashion-classifier",
                 device: str | torch.device | None = None) -> None:
        if isinstance(classifier, str | Path):
            from decoding.evals.classifier import load_classifier

            classifier = load_classifier(classifier, device or "cpu")
        self.net = classifier.eval()
        classes = int(self.net(torch.zeros(1, 1, 28, 28, device=_device(self.net))).shape[-1])
        if not (isinstance(label, int) and 0 <= label < classes):
            raise ValueError(f"label must be a class index in [0, {classes - 1}], got {label!r}")
        self.label = label

    def log_probs(self, x0: Tensor) -> Tensor:
        """``(B, classes)`` log-probabilities (differentiable in ``x0``); images are clamped to [-1, 1]."""
        dev = _device(self.net)
        return torch.log_softmax(self.net(x0.to(dev, torch.float32).clamp(-1, 1)).double(), -1).to(x0.device)

    def __call__(self, x0: Tensor) -> Tensor:
        with torch.no_grad():
            return self.log_probs(x0)[:, self.label]

    def spec(self) -> str:
        return f"classifier:{self.label}"


def _device(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def call_reward(reward: Reward, x0: Tensor) -> Tensor:
    """``reward(x0)`` checked: ``(B,)`` finite float64 on the CPU, else a ValueError naming the reward."""
    name = getattr(reward, "__name__", type(reward).__name__)
    with torch.no_grad():
        out = reward(x0)
    out = torch.as_tensor(out)
    if out.shape != (x0.shape[0],):
        raise ValueError(f"reward {name} must return one value per sample, shape ({x0.shape[0]},); got {tuple(out.shape)}")
    out = out.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"reward {name} returned a non-finite value; rewards must be finite numbers")
    return out
