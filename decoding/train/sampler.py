"""The order in which a trainer visits its examples: epochs of seeded permutations.

Epoch ``e`` visits the ``n`` examples in the order ``torch.randperm(n)`` drawn from a CPU
generator seeded with ``(seed, e)`` alone, ``batch`` at a time; the last ``n mod batch`` examples
of an epoch are skipped (every batch is full). The whole state is ``(epoch, position)``, so a
resumed run continues the same order, on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor


class EpochSampler:
    """Batches of example indices ``(batch,)`` (int64, on ``device``) without replacement within an epoch.

    Args:
        n: number of examples (indices ``0..n-1``).
        batch: indices per call of :meth:`next`; at most ``n``.
        seed: fixes every epoch's permutation.
        device: where the indices live (where the data is).
    """

    def __init__(self, n: int, batch: int, seed: int, device: torch.device | str = "cpu") -> None:
        if batch < 1:
            raise ValueError(f"batch size must be >= 1, got {batch}")
        if n < batch:
            raise ValueError(f"the training set has {n} examples, fewer than the batch size {batch}; lower --batch-size")
        self.n, self.batch, self.seed = int(n), int(batch), int(seed)
        self.device = torch.device(device)
        self.epoch, self.position = 0, 0
        self._perm: Tensor | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch

    def permutation(self, epoch: int) -> Tensor:
        """``(n,)`` the visiting order of ``epoch`` (CPU)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def next(self) -> Tensor:
        """The next ``(batch,)`` indices; advances the state."""
        if self.position + self.batch > self.n:
            self.epoch, self.position, self._perm = self.epoch + 1, 0, None
        if self._perm is None:  # once per epoch; pinned + non_blocking: the host does not wait for the device
            perm = self.permutation(self.epoch)
            cuda = self.device.type == "cuda"
            self._perm = (perm.pin_memory() if cuda else perm).to(self.device, non_blocking=cuda)
        idx = self._perm[self.position : self.position + self.batch]
        self.position += self.batch
        return idx

    def state(self) -> dict[str, int]:
        return {"n": self.n, "batch": self.batch, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        """Continue from :meth:`state`; the data size, batch and seed must be the run's own."""
        for key in ("n", "batch", "seed"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(
                    f"the checkpoint's sampler has {key}={state[key]} but this run has {getattr(self, key)}: "
                    "resume with the same data and batch size"
                )
        self.epoch, self.position, self._perm = int(state["epoch"]), int(state["position"]), None

    @property
    def epochs_done(self) -> float:
        """Fractional epochs visited so far."""
        return self.epoch + self.position / self.n
