"""One random stream per batch row, so that a row's samples do not depend on its neighbours.

A single ``torch.Generator`` draws the exponential race of the whole ``(B, V)`` batch at once:
row ``r`` then gets the numbers after those of rows ``0..r-1``, and its sample changes when the
batch does. :class:`RowGenerators` keeps one generator per row and draws row ``r``'s race from
its own stream, so a request reproduces from its seed whatever it is batched with (continuous
batching adds and removes rows between steps). Cost: one ``exponential_`` call per row per step
instead of one for the batch (``B`` small kernels on a GPU; the same numbers are drawn).
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor


class RowGenerators(Sequence[torch.Generator]):
    """A list of ``torch.Generator``, one per row along the first dimension of what is sampled.

    Pass it wherever :func:`decoding.decode` takes a ``generator``; sampling
    (:func:`decoding.core.sampling.sample_categorical`) then draws each row from its own stream.
    """

    def __init__(self, generators: Iterable[torch.Generator]) -> None:
        self.generators = list(generators)
        if not self.generators:
            raise ValueError("RowGenerators needs at least one generator")
        devices = {g.device for g in self.generators}
        if len(devices) > 1:
            raise ValueError(f"all row generators must live on one device, got {sorted(map(str, devices))}")

    @classmethod
    def from_seeds(cls, seeds: Iterable[int], device: torch.device | str = "cpu") -> RowGenerators:
        """One generator per seed, seeded with ``manual_seed(seed)`` on ``device``."""
        return cls(torch.Generator(device=torch.device(device)).manual_seed(int(s)) for s in seeds)

    @property
    def device(self) -> torch.device:
        return self.generators[0].device

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return RowGenerators(self.generators[i])
        return self.generators[i]

    def __iter__(self) -> Iterator[torch.Generator]:
        return iter(self.generators)

    def exponential_like(self, probs: Tensor) -> Tensor:
        """``Exp(1)`` noise shaped like ``probs`` ``(B, ...)``, row ``r`` drawn from generator ``r``."""
        if probs.shape[0] != len(self.generators):
            raise ValueError(f"{len(self.generators)} row generators for a batch of {probs.shape[0]} rows")
        out = torch.empty_like(probs)
        for r, g in enumerate(self.generators):
            out[r].exponential_(1.0, generator=g)
        return out


SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


def check_seed(seed: Any) -> None:
    """Raise ``ValueError`` unless ``seed`` is None or a whole number torch can seed a generator with."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]):
        raise ValueError(f"seed must be a whole number in [-2**63, 2**64 - 1], got {seed!r}")


def row_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a request seeded with ``seed``.

    Sample 0 uses ``seed`` itself (so ``n = 1`` reproduces ``decoding.generate(..., seed=seed)``);
    the others use a hash of ``(seed, index)``, so that requests with neighbouring seeds do not
    share samples.
    """
    if index == 0:
        return int(seed)
    digest = hashlib.sha256(f"{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
