"""The two interfaces the eval runner plugs together: a :class:`Job` draws samples, a :class:`Metric` scores them.

A job is one config of one task (a model, a decoder and its settings). The runner hands it
chunks of sample indices with a generator seeded from the chunk, and stores what comes back:
JSON-able per-sample outputs in ``results.jsonl`` and per-sample tensors (images) as a
safetensors file next to them. Metrics score each chunk right after it is drawn (per-sample
values, stored with the sample) and summarize all samples of a config at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor


@dataclass
class Batch:
    """What a job produced for one chunk of ``n`` sample indices.

    Attributes:
        outputs: ``n`` JSON-able dicts (tokens, text, predicted labels, ...), stored per sample.
        nfe: ``n`` model evaluations per sample (as counted by the decode loop).
        seconds: wall time of the whole chunk (decoding only, not scoring).
        tensors: per-sample tensors ``(n, ...)`` on the CPU, stored as the chunk's artifact
            (e.g. ``images`` uint8 ``(n, C, H, W)``); metrics read them back when summarizing.
        data: in-memory values for the per-sample metrics of this chunk (never stored).
    """

    outputs: list[dict[str, Any]]
    nfe: list[float]
    seconds: float
    tensors: dict[str, Tensor] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.outputs)
        if len(self.nfe) != n:
            raise ValueError(f"Batch has {n} outputs but {len(self.nfe)} NFE values")
        for k, t in self.tensors.items():
            if t.shape[0] != n:
                raise ValueError(f"Batch tensor {k!r} has {t.shape[0]} rows for {n} samples")


class Job(Protocol):
    """One config of one task: draws the samples of a chunk of indices.

    Attributes:
        kind: ``"text"``, ``"image"`` or ``"classify"``; metrics check they fit it.
        device: where the job's model lives (the generator handed to ``run`` is on it).
    """

    kind: str
    device: torch.device

    def run(self, indices: Sequence[int], generator: torch.Generator) -> Batch:
        """Draw (or classify) samples ``indices``; all randomness comes from ``generator``."""
        ...


class SequentialJob(Job, Protocol):
    """A job that learns across samples (grammar-aligned decoding's trie): its chunks run in
    order on one rank, and its state is stored with every chunk so that a resumed run goes on
    from where the last finished chunk left it. Set ``sequential = True``.
    """

    sequential: bool

    def get_state(self) -> bytes: ...

    def set_state(self, state: bytes | None) -> None:
        """Start from ``state`` (``None``: from scratch)."""
        ...


Artifacts = Callable[[str], Tensor]
"""``artifacts(name)``: the per-sample tensor ``name`` of every sample of a config, in index order."""


class Metric(Protocol):
    """A quality or cost measure.

    ``check`` runs before any sample is drawn and raises ``ValueError`` when the metric cannot
    apply to the job. ``score`` returns per-sample values (an empty list when the metric only
    summarizes). ``summarize`` gets every stored record of a config (dicts as in
    ``results.jsonl``) and returns scalars, or for plots ``{"x": [...], "y": [...]}`` curves and
    ``{"labels": [...], "target": [...], "observed": [...]}`` distributions.
    """

    name: str
    primary: tuple[str, ...]
    """The summary keys the report plots by default (against NFE or time)."""

    def check(self, job: Job) -> None: ...

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]: ...

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]: ...


def mean(values: Sequence[float]) -> float:
    """The mean of ``values`` (NaN when empty)."""
    return float(sum(values) / len(values)) if values else float("nan")


def per_sample_mean(records: list[dict[str, Any]], key: str) -> float:
    """Mean of ``record["metrics"][key]`` over the records that hold it."""
    return mean([r["metrics"][key] for r in records if key in r.get("metrics", {})])


def take_args(where: str, args: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """``allowed`` (name -> default) overlaid with ``args``; an unknown name is a ValueError naming ``where``."""
    bad = sorted(set(args) - set(allowed))
    if bad:
        raise ValueError(f"{where}: unknown argument(s) {bad}; accepted: {sorted(allowed)}")
    return {**allowed, **args}
