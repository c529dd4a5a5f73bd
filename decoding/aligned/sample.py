"""Sampling functions for grammar-aligned decoding (ASAp, arXiv 2405.21047) on top of :func:`decoding.decode`.

- :func:`sample_aligned`: one batch, one ``decode`` call, then the trie update.
- :func:`generate_aligned`: many samples in batches with an optional trie file that persists
  between runs; this is what ``decoding text --grammar G --aligned [--trie PATH]`` calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from decoding.aligned.asap import ASAp
from decoding.core.loop import decode
from decoding.core.protocols import Constraint, Model, Processor
from decoding.core.types import Result, new_generator
from decoding.processes.autoregressive import Autoregressive


@dataclass(frozen=True)
class AlignedResult:
    """One ASAp batch: the loop's :class:`~decoding.core.types.Result` and each row's generated ids."""

    result: Result
    sequences: list[list[int]]


def sample_aligned(
    model: Model,
    constraint: Constraint,
    prompt: Tensor | dict[str, Tensor],
    *,
    asap: ASAp,
    steps: int,
    processors: Sequence[Processor] = (),
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> AlignedResult:
    """Sample one batch with ASAp, then update ``asap``'s trie (rows in row order).

    Args:
        model: next-token model, ``state -> Prediction`` with logits ``(B, V)``.
        constraint: a fresh constraint for the batch (it is advanced; pass a fork to keep yours).
        prompt: ``(B, P)`` long ids (or ``input_ids`` + left-padded ``attention_mask``).
        asap: the trie shared by every call.
        steps: maximum new tokens.
        processors: applied before ASAp (ASAp aligns to the distribution they produce).
        pad_token_id: appended to finished rows (default: the first EOS id).

    Returns:
        :class:`AlignedResult`.
    """
    aligned = asap.constraint(constraint)
    process = Autoregressive(
        eos_token_id=list(asap.eos_token_ids),
        pad_token_id=asap.eos_token_ids[0] if pad_token_id is None else pad_token_id,
    )
    result = decode(
        model,
        process,
        prompt,
        steps=steps,
        processors=processors,
        constraint=aligned,
        generator=generator,
        seed=seed,
        progress=progress,
    )
    return AlignedResult(result=result, sequences=aligned.finish())


@dataclass(frozen=True)
class AlignedRun:
    """Output of :func:`generate_aligned`.

    Attributes:
        sequences: generated ids of every sample, in sampling order (EOS kept where it ended).
        complete: whether each sample ended with EOS (False: it hit ``max_new_tokens``).
        asap: the trie after the run (also saved to the trie file when one was given).
        nfe: total model calls (sum over rows).
        seconds: total wall time of the decode loops.
    """

    sequences: list[list[int]]
    complete: list[bool]
    asap: ASAp
    nfe: float
    seconds: float


def generate_aligned(
    model: Model,
    make_constraint: Callable[[int], Constraint],
    prompt: Tensor,
    *,
    num_samples: int,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    batch_size: int = 1,
    processors: Sequence[Processor] = (),
    pad_token_id: int | None = None,
    trie: str | os.PathLike[str] | ASAp | None = None,
    signature: str = "",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    on_batch: Callable[[list[list[int]]], Any] | None = None,
) -> AlignedRun:
    """Draw ``num_samples`` grammar-aligned samples of one prompt, ``batch_size`` rows per decode call.

    Args:
        model: next-token model.
        make_constraint: ``batch_size -> Constraint``, a fresh constraint per batch
            (e.g. the compiled grammar's constructor).
        prompt: ``(P,)`` or ``(1, P)`` long token ids.
        num_samples: how many samples to draw (> 0).
        max_new_tokens: per sample (> 0).
        eos_token_id: id(s) that end a sample.
        batch_size: rows per decode call; the trie is updated after each call (1 = the paper).
        trie: a path (loaded if it exists, saved after the run) or an :class:`ASAp` to continue;
            None starts from an empty trie.
        signature: names the model + grammar + processors; a trie file with another signature
            is refused.
        seed / generator: the random source (one generator for all batches).
        on_batch: called with each batch's sequences (e.g. to stream them).

    Returns:
        :class:`AlignedRun`.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = prompt if prompt.dim() == 2 else prompt[None]
    if ids.dim() != 2 or ids.shape[0] != 1 or ids.dtype != torch.long:
        raise ValueError(
            f"prompt must be (P,) or (1, P) long token ids, got {tuple(prompt.shape)} {prompt.dtype}"
        )
    path: Path | None = None
    if isinstance(trie, ASAp):
        asap = trie
        if asap.eos_token_ids != ASAp(eos_token_id).eos_token_ids:
            raise ValueError(f"the ASAp trie uses EOS ids {list(asap.eos_token_ids)}, not {eos_token_id!r}")
    else:
        path = None if trie is None else Path(trie)
        if path is not None and path.exists():
            asap = ASAp.load(path, signature=signature, eos_token_id=eos_token_id)
        else:
            asap = ASAp(eos_token_id, signature=signature)
    if generator is None:
        generator = new_generator(seed, ids.device)
    eos = set(asap.eos_token_ids)
    sequences: list[list[int]] = []
    nfe, seconds = 0.0, 0.0
    with tqdm(total=num_samples, disable=not progress, desc="asap") as bar:
        while len(sequences) < num_samples:
            b = min(batch_size, num_samples - len(sequences))
            out = sample_aligned(
                model,
                make_constraint(b),
                ids.expand(b, -1).contiguous(),
                asap=asap,
                steps=max_new_tokens,
                processors=processors,
                pad_token_id=pad_token_id,
                generator=generator,
            )
            sequences.extend(out.sequences)
            nfe += float(out.result.nfe.sum())
            seconds += out.result.seconds
            if on_batch is not None:
                on_batch(out.sequences)
            bar.update(b)
    if path is not None:
        asap.save(path)
    complete = [bool(s) and s[-1] in eos for s in sequences]
    return AlignedRun(sequences=sequences, complete=complete, asap=asap, nfe=nfe, seconds=seconds)
