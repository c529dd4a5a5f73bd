"""Class-conditional Gaussian data with exact denoisers, for the distillation tests (float64).

Class ``y`` (and the null label, the "unconditional" model) is ``N(mu_y, U diag(e_y) U^T)``: one
orthonormal basis ``U`` for all, so that every denoiser, every CFG combination of them and every
DDIM step is a per-coordinate affine map in that basis. The v-prediction network is
``v = (alpha z - E[x0 | z]) / sigma``; images are ``(B, 1, 2, 2)`` (D = 4).
"""

from __future__ import annotations

import torch
from torch import Tensor

D = 4
SHAPE = (1, 2, 2)


class GaussianClasses:
    """``num_classes`` Gaussian classes plus a null-label Gaussian, sharing the eigenbasis ``U``."""

    def __init__(self, num_classes: int = 3, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.num_classes = num_classes
        self.U, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
        self.means = torch.randn(num_classes + 1, D, generator=g, dtype=torch.float64)  # row num_classes: null
        self.evals = 0.05 + torch.rand(num_classes + 1, D, generator=g, dtype=torch.float64) * 1.5

    @staticmethod
    def coefficients(lam: Tensor) -> tuple[Tensor, Tensor]:
        lam = lam.double()
        return torch.sigmoid(2 * lam).sqrt(), torch.sigmoid(-2 * lam).sqrt()

    def denoise(self, z: Tensor, lam: Tensor, labels: Tensor) -> Tensor:
        """``E[x0 | z]`` ``(B, 1, 2, 2)`` under each row's Gaussian."""
        a, s = (c[:, None] for c in self.coefficients(lam))
        mu, e = self.means[labels], self.evals[labels]
        q = (z.reshape(-1, D).double() - a * mu) @ self.U
        return (mu + (q * a * e / (a * a * e + s * s)) @ self.U.T).reshape(z.shape)

    def net(self, z: Tensor, lam: Tensor, labels: Tensor) -> Tensor:
        """The exact v-prediction network ``(z, lam, labels) -> v`` (a UNet's signature)."""
        a, s = (c.view(-1, 1, 1, 1) for c in self.coefficients(lam))
        return (a * z.double() - self.denoise(z, lam, labels)) / s

    def sample(self, n: int, label: int, generator: torch.Generator) -> Tensor:
        """``n`` draws ``(n, 1, 2, 2)`` of class ``label``."""
        x = torch.randn(n, D, generator=generator, dtype=torch.float64) * self.evals[label].sqrt()
        return (self.means[label] + x @ self.U.T).reshape(n, *SHAPE)
