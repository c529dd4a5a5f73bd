"""Embeddings of the noise level, the class label and the guidance weight for image denoisers.

The noise level enters as the half log signal-to-noise ratio ``lambda = log(alpha / sigma)`` of a
variance-preserving process (the ``lambda`` of DPM-Solver, arXiv:2206.00927, and of
:mod:`decoding.solvers.schedules`), so a network does not depend on how a schedule maps time to
noise: any VP schedule (cosine, linear, diffusers' discrete ones) reaches it through ``lambda``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class NoiseLevelEmbedding(nn.Module):
    """Sinusoidal features of ``lambda`` followed by a two-layer MLP.

    The periods form a geometric series from ``max_period`` (longer than the range of lambda the
    model sees, about [-10, 10]) down to ``min_period`` (fine enough to tell lambda apart at 0.05).

    Args:
        dim: number of sinusoidal features (even).
        out_dim: width of the embedding handed to the residual blocks.
    """

    def __init__(self, dim: int, out_dim: int, min_period: float = 0.1, max_period: float = 40.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        # not a buffer: casting the network to bfloat16 must not round them (float32, cached per device)
        self.freqs = [2 * math.pi / (max_period * (min_period / max_period) ** (i / max(half - 1, 1))) for i in range(half)]
        self._freqs_on: dict[torch.device, Tensor] = {}
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, lam: Tensor) -> Tensor:
        """``lam`` ``(B,)`` half log-SNR -> ``(B, out_dim)``."""
        freqs = self._freqs_on.get(lam.device)
        if freqs is None:
            freqs = self._freqs_on[lam.device] = torch.tensor(self.freqs, dtype=torch.float32, device=lam.device)
        arg = lam.float()[:, None] * freqs[None, :]
        features = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)  # float32 (B, dim)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


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


class GuidanceEmbedding(NoiseLevelEmbedding):
    """Sinusoidal features of the guidance weight ``w`` and a two-layer MLP whose output starts at zero.

    A guidance-distilled student (Meng et al., arXiv 2210.03142, sec. 3.1) takes ``w`` the way it takes
    the noise level. The last layer is zero-initialised, so a student built from a trained teacher
    computes exactly the teacher's (conditional) output for every ``w`` before training.

    Args:
        dim: number of sinusoidal features (even).
        out_dim: width of the embedding (added to the noise-level and class embeddings).
        min_period, max_period: shortest and longest period in units of ``w`` (weights up to ~10).
    """

    def __init__(self, dim: int, out_dim: int, min_period: float = 0.2, max_period: float = 40.0) -> None:
        super().__init__(dim, out_dim, min_period, max_period)
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, w: Tensor) -> Tensor:
        """``w`` ``(B,)`` guidance weights -> ``(B, out_dim)``."""
        return super().forward(w)
