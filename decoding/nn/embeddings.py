"""Embeddings of the noise level and of the class label for image denoisers.

The noise level enters as the log signal-to-noise ratio ``lambda = log(alpha^2 / sigma^2)`` of a
variance-preserving process (Kingma et al., Variational Diffusion Models, arXiv:2107.00630), so a
network does not depend on how a schedule maps time to noise: any VP schedule (cosine, linear,
diffusers' discrete ones) reaches it through its log-SNR.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LogSNREmbedding(nn.Module):
    """Sinusoidal features of ``lambda`` followed by a two-layer MLP.

    The periods form a geometric series from ``max_period`` (longer than the range of lambda the
    model sees, about [-20, 20]) down to ``min_period`` (fine enough to tell lambda apart at 0.1).

    Args:
        dim: number of sinusoidal features (even).
        out_dim: width of the embedding handed to the residual blocks.
    """

    def __init__(self, dim: int, out_dim: int, min_period: float = 0.2, max_period: float = 80.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        periods = max_period * (min_period / max_period) ** (torch.arange(half, dtype=torch.float64) / max(half - 1, 1))
        self.register_buffer("freqs", (2 * math.pi / periods).float(), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, log_snr: Tensor) -> Tensor:
        """``log_snr`` ``(B,)`` -> ``(B, out_dim)``."""
        arg = log_snr.float()[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1))


class ClassEmbedding(nn.Module):
    """Label embedding with one extra "null" row (index ``num_classes``) for classifier-free guidance.

    Classifier-free guidance (Ho & Salimans, arXiv:2207.12598) trains one network on labels that
    are dropped to the null class with some probability, so the same network also gives the
    unconditional prediction.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, labels: Tensor) -> Tensor:
        """``labels`` ``(B,)`` long in ``[0, num_classes]`` -> ``(B, dim)``."""
        return self.table(labels)
