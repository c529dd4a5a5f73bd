"""What the HTTP side hands the scheduler (a :class:`TextJob`) and what comes back (:class:`RowUpdate`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from decoding.api.options import Sampling


@dataclass
class RowUpdate:
    """New tokens of one sample (choice) since the last update.

    Attributes:
        choice: the sample's index within its job.
        tokens: ids generated since the last update (EOS included when it ended the sample).
        logprobs: per new token ``(logprob, [(token id, logprob), ...])`` when the job asked for them.
        finish: ``"stop"`` (EOS or a stop string), ``"length"`` (``max_tokens``) or None (going on).
        budget_limited: the grammar's budget guard restricted this sample (constrained jobs).
    """

    choice: int
    tokens: list[int]
    logprobs: list[tuple[float, list[tuple[int, float]]]] | None = None
    finish: str | None = None
    budget_limited: bool = False


@dataclass
class TextJob:
    """One prompt with ``n`` samples for the continuous batch.

    Attributes:
        prompt_ids: the prompt's token ids (chat template applied).
        n: samples; sample ``j`` draws from its own generator seeded ``row_seed(seed, j)``.
        seed: the request's seed.
        sampling: processors and greedy flag (temperature 0 = greedy).
        max_tokens: new tokens per sample at most (EOS included).
        stops: stop strings (the sample ends when its text contains one).
        grammar: a compiled grammar (every sample is a sentence of it, closed in time by the budget
            guard) or None.
        logprobs: how many top alternatives to report per token, or None for no logprobs.
        deliver: called from the scheduler's thread with a list of updates, or with an exception.
    """

    prompt_ids: list[int]
    n: int
    seed: int
    sampling: Sampling
    max_tokens: int
    stops: list[str] = field(default_factory=list)
    grammar: Any = None
    logprobs: int | None = None
    deliver: Callable[[list[RowUpdate] | BaseException], None] = lambda _: None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """The client went away: the scheduler drops the job's rows at its next batch change."""
        self.cancelled.set()


@dataclass
class Row:
    """One sample of a job inside the running batch."""

    job: TextJob
    choice: int
    generator: torch.Generator
    chain: tuple
    constraint: Any
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None
    padding: bool = False

    @property
    def remaining(self) -> int:
        return self.job.max_tokens - len(self.tokens)

    @classmethod
    def pad(cls, device: torch.device) -> Row:
        """A finished row that only fills the batch up to a bucket size (it is never decoded into)."""
        job = TextJob(prompt_ids=[0], n=1, seed=0, sampling=Sampling(), max_tokens=1 << 30)
        return cls(job=job, choice=0, generator=torch.Generator(device=device), chain=(), constraint=None, padding=True)
