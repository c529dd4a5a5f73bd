"""The options of :func:`decoding.generate` that every model kind takes, in one record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from decoding.api.options import OptionError
from decoding.core.row_generators import check_seed
from decoding.core.types import State


@dataclass(frozen=True)
class Run:
    """How a ``generate`` call runs, whatever the kind.

    Attributes:
        n: samples (per prompt for causal LMs), >= 1.
        seed: random seed (None: random).
        batch_size: rows per decode call (None: all at once).
        on_step: ``on_step(i, state)`` after every step of the loop (streaming).
        progress: a tqdm bar per decode call.
        sync_every: steps between the host's looks at the device (see :func:`decoding.decode`).
    """

    n: int
    seed: int | None
    batch_size: int | None = None
    on_step: Callable[[int, State], None] | None = None
    progress: bool = False
    sync_every: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise OptionError(f"n must be a whole number >= 1, got {self.n!r}")
        try:
            check_seed(self.seed)
        except ValueError as e:
            raise OptionError(str(e)) from None
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise OptionError(f"batch_size must be a whole number >= 1, got {self.batch_size!r}")

    def chunks(self, rows: int | None = None) -> list[tuple[int, int]]:
        """``(start, size)`` of each decode call over ``rows`` rows (default ``n``)."""
        total = self.n if rows is None else rows
        size = total if self.batch_size is None else self.batch_size
        return [(lo, min(size, total - lo)) for lo in range(0, total, size)]

    def decode_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`decoding.decode` these options set."""
        on_step = self.on_step
        callback = None if on_step is None else (lambda i, state, pred: on_step(i, state))
        return {"progress": self.progress, "sync_every": self.sync_every, "callback": callback}
