"""Noise schedules of absorbing (masked) discrete diffusion, as the probability that a token is masked.

A schedule is ``m(t)``: the probability that a position is masked at time ``t`` in ``[0, 1]``,
increasing with ``m(0) = 0`` and ``m(1) = 1``. In SEDD/RADD notation (arXiv:2310.16834,
arXiv:2406.03736) ``m(t) = 1 - exp(-sigma_bar(t))``. Everything a sampler or the training loss
needs follows from ``m``:

- the reverse (unmasking) hazard of a masked position, ``rate(t) = m'(t) / m(t)``: RADD's
  time scalar ``sigma'(t) e^{-sigma_bar} / (1 - e^{-sigma_bar})``;
- the exact probability that a position masked at ``t`` is still masked at ``s < t``,
  ``m(s) / m(t)`` (the time-integral of the hazard);
- the denoising cross-entropy weight ``rate(t)`` of the training loss (MDLM, arXiv:2406.07524;
  RADD's t-DCE).

Schedules here:

- ``loglinear`` (SEDD/RADD): ``sigma_bar(t) = -log(1 - (1 - eps) t)``, i.e. ``m(t) = (1 - eps) t``.
  Samplers only use ratios of ``m`` and ``m'/m``, where ``1 - eps`` cancels, so ``m(t) = t``
  and ``rate(t) = 1 / t``; training draws ``t`` in ``[eps, 1]`` to avoid the ``1/t`` blow-up.
- ``cosine`` (MaskGIT's mask ratio, arXiv:2202.04200): ``m(t) = sin(pi t / 2)``.
- ``poly:K`` for ``K > 0``: ``m(t) = t^K`` (``poly:1`` is ``loglinear``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class MaskSchedule(Protocol):
    """``m(t)``: probability of being masked at time ``t``; ``rate(t) = m'(t) / m(t)``."""

    name: str

    def mask_prob(self, t: float) -> float: ...

    def rate(self, t: float) -> float: ...


@dataclass(frozen=True)
class LogLinear:
    """SEDD/RADD log-linear noise: ``m(t) = t`` for sampling (``1 - eps`` cancels), ``rate = 1/t``."""

    eps: float = 1e-3
    name: str = "loglinear"

    def mask_prob(self, t: float) -> float:
        return float(t)

    def rate(self, t: float) -> float:
        return math.inf if t <= 0 else 1.0 / t


@dataclass(frozen=True)
class Cosine:
    """MaskGIT's cosine mask ratio: ``m(t) = sin(pi t / 2)``, ``rate = (pi/2) cot(pi t / 2)``."""

    name: str = "cosine"

    def mask_prob(self, t: float) -> float:
        return 1.0 if t >= 1 else math.sin(math.pi * t / 2)

    def rate(self, t: float) -> float:
        if t <= 0:
            return math.inf
        return 0.0 if t >= 1 else (math.pi / 2) / math.tan(math.pi * t / 2)


@dataclass(frozen=True)
class Poly:
    """``m(t) = t^k`` (``k > 0``), ``rate = k / t``."""

    k: float = 2.0
    name: str = "poly"

    def __post_init__(self) -> None:
        if not self.k > 0:
            raise ValueError(f"poly schedule exponent must be > 0, got {self.k}")

    def mask_prob(self, t: float) -> float:
        return float(t) ** self.k

    def rate(self, t: float) -> float:
        return math.inf if t <= 0 else self.k / t


SCHEDULES = ("loglinear", "cosine", "poly:K")


def get_schedule(name: str | MaskSchedule) -> MaskSchedule:
    """A schedule by name: ``"loglinear"``, ``"cosine"`` or ``"poly:K"`` (e.g. ``"poly:2"``); objects pass through."""
    if not isinstance(name, str):
        if not (hasattr(name, "mask_prob") and hasattr(name, "rate")):
            raise ValueError(f"a schedule needs mask_prob(t) and rate(t); got {type(name).__name__}")
        return name
    key = name.strip().lower()
    if key == "loglinear":
        return LogLinear()
    if key == "cosine":
        return Cosine()
    if key.startswith("poly:"):
        try:
            k = float(key.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad poly schedule {name!r}; write poly:K with a number K > 0, e.g. poly:2") from None
        return Poly(k)
    raise ValueError(f"unknown noise schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
