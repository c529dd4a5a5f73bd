"""The empirical denoiser of a dataset: the exact posterior mean when data is the training set itself.

For data uniform over points ``y_1..y_N`` and ``x = alpha x0 + sigma eps``:
``E[x0 | x] = sum_i w_i(x) y_i`` with ``w = softmax_i(-|x - alpha y_i|^2 / (2 sigma^2))`` (a
softmax-weighted average; Karras et al. arXiv 2206.00364 Sec. 3 use it as the ideal denoiser).
:func:`fashion_mnist_data` builds it from a subset of the Fashion-MNIST training images
(Xiao et al., arXiv 1708.07747) scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from decoding.solvers.parameterization import bcast


class EmpiricalData:
    """Uniform distribution over ``points`` ``(N, *shape)``.

    Args:
        points: the dataset (float, any shape per point).
        chunk: rows of ``x`` processed at once (bounds the ``(chunk, N)`` weight matrix).
    """

    def __init__(self, points: Tensor, chunk: int = 256) -> None:
        points = torch.as_tensor(points)
        if points.dim() < 2 or points.shape[0] < 1:
            raise ValueError(f"points must be (N, ...) with N >= 1, got {tuple(points.shape)}")
        self.shape = tuple(points.shape[1:])
        self.points = points.reshape(points.shape[0], -1).to(torch.float64)
        self.sq_norms = (self.points**2).sum(-1)
        self.chunk = int(chunk)

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    def denoise(self, x: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor:
        """``E[x0 | x_t = x]`` for ``x`` ``(B, *shape)``; ``alpha``, ``sigma`` scalars or ``(B,)`` with ``sigma > 0``."""
        xf = x.reshape(x.shape[0], -1)
        if xf.shape[1] != self.dim:
            raise ValueError(f"samples have {xf.shape[1]} values, the dataset points have {self.dim}")
        pts, sq = self.points.to(xf), self.sq_norms.to(xf)
        a_all, s_all = bcast(alpha, xf), bcast(sigma, xf)
        out = []
        for lo in range(0, xf.shape[0], self.chunk):
            xb = xf[lo : lo + self.chunk]
            a = a_all if a_all.dim() == 0 else a_all[lo : lo + self.chunk]
            s = s_all if s_all.dim() == 0 else s_all[lo : lo + self.chunk]
            logits = (a * (xb @ pts.T) - 0.5 * a * a * sq[None]) / (s * s)
            out.append(torch.softmax(logits, dim=-1) @ pts)
        return torch.cat(out).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` points drawn uniformly with replacement, ``(n, *shape)``."""
        idx = torch.randint(self.points.shape[0], (n,), generator=generator)
        return self.points[idx].reshape(n, *self.shape)


def fashion_mnist_data(n: int = 2000, seed: int = 0, split: str = "train", root: str | None = None) -> EmpiricalData:
    """The empirical distribution of ``n`` Fashion-MNIST images (a fixed random subset), pixels in ``[-1, 1]``.

    Points have shape ``(1, 28, 28)``. Raises :class:`~decoding.data.fashion_mnist.DatasetNotFoundError`
    (with install instructions) when the dataset is missing.
    """
    from decoding.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist(split, root=root)
    if not 1 <= n <= images.shape[0]:
        raise ValueError(f"n must lie in [1, {images.shape[0]}], got {n}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(images.shape[0], generator=g)[:n]
    pts = images[idx].to(torch.float64) / 127.5 - 1.0
    return EmpiricalData(pts[:, None])
