"""Networks with a known answer, for tests of the image model plumbing."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from decoding.models.image import SIZES


class PointOracle(nn.Module):
    """The exact network for data concentrated on one image ``target`` ``(1, C, H, W)``.

    With ``x0 = target`` always, ``eps = (x - alpha target) / sigma``, so the exact outputs are
    ``eps`` (eps-prediction) or ``v = alpha eps - sigma target`` (v-prediction), where
    ``alpha^2 = sigmoid(2 lambda)``. It mimics a :class:`~decoding.nn.unet.UNet` (``cfg``, ``forward(x, lam, labels)``).
    """

    def __init__(self, target: Tensor, prediction: str = "v") -> None:
        super().__init__()
        self.cfg = copy.deepcopy(SIZES["tiny"])
        self.target = nn.Parameter(target.clone(), requires_grad=False)
        self.prediction = prediction

    def forward(self, x: Tensor, lam: Tensor, labels: Tensor) -> Tensor:
        lam = lam.double().view(-1, 1, 1, 1)
        alpha, sigma = torch.sigmoid(2 * lam).sqrt(), torch.sigmoid(-2 * lam).sqrt()
        x0 = self.target.double()
        eps = (x.double() - alpha * x0) / sigma
        out = eps if self.prediction == "eps" else alpha * eps - sigma * x0
        return out.to(x.dtype)
