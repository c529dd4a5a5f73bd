"""The one decode loop: model -> prediction -> processors / constraint -> process step.

Every decoder in the engine (autoregressive tokens, absorbing discrete diffusion, any-order
models, continuous diffusion solvers, one-step decoders) runs through :func:`decode`.
NFE (network function evaluations) is counted here and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from tqdm.auto import tqdm

from decoding.core.protocols import Constraint, Model, Process, Processor
from decoding.core.types import Prediction, Result, State

Callback = Callable[[int, State, Prediction], None]


class NonFiniteLogitsError(FloatingPointError):
    """Raised when a model returns NaN (or +inf) logits; names the step and the rows."""


def _check_finite(logits: torch.Tensor, step: int) -> None:
    bad = torch.isnan(logits) | (logits == float("inf"))
    if bad.any():
        rows = torch.nonzero(bad.reshape(bad.shape[0], -1).any(-1)).flatten().tolist()
        raise NonFiniteLogitsError(
            f"model returned NaN or +inf logits at step {step} in batch rows {rows[:10]}; "
            "check the model's dtype (try float32) and its inputs"
        )


def apply_processors(
    logits: torch.Tensor,
    state: State,
    processors: Sequence[Processor] = (),
    constraint: Constraint | None = None,
) -> torch.Tensor:
    """Run ``processors`` in order, then mask with ``constraint`` (disallowed -> -inf).

    The constraint is applied last so that truncation (top-k/p, typical) is computed on the
    model's distribution and the grammar removes tokens afterwards, like every peer library.
    Rows whose allowed set would be emptied by the processors keep the constraint's allowed set.
    """
    out = logits
    for proc in processors:
        out = proc(out, state)
    if constraint is not None:
        allowed = constraint.mask(state).to(out.device)
        if allowed.shape != out.shape:
            raise ValueError(f"constraint mask has shape {tuple(allowed.shape)}, logits {tuple(out.shape)}")
        masked = out.masked_fill(~allowed, float("-inf"))
        empty = torch.isneginf(masked).all(-1, keepdim=True)
        if empty.any():  # processors removed every allowed token: fall back to the raw logits
            masked = torch.where(empty, logits.masked_fill(~allowed, float("-inf")), masked)
        out = masked
    return out


def decode(
    model: Model,
    process: Process,
    prompt: Any,
    *,
    steps: int,
    processors: Sequence[Processor] = (),
    constraint: Constraint | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    cond: Any = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Result:
    """Decode ``prompt`` with ``model`` under ``process`` in at most ``steps`` steps.

    Args:
        model: ``state -> Prediction``.
        process: starts the state, gives the time grid and takes steps.
        prompt: what ``process.init`` takes (token ids, a template, a batch size, a shape).
        steps: number of steps (new tokens for autoregressive processes).
        processors: logits processors, applied in order to ``Prediction.logits``.
        constraint: per-row token constraint (grammar); advanced on ``State.emitted``.
        generator: the random source (its device must match the model's). Overrides ``seed``.
        seed: seed for a new generator on the prompt's device when ``generator`` is None.
        cond: conditioning stored in ``state.memory["cond"]`` for models and guidance wrappers.
        callback: ``callback(i, state_after_step, prediction)`` after every step.
        progress: show a tqdm bar.

    Returns:
        :class:`Result` with the final state, per-row NFE ``(B,)`` and wall time.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if generator is None:
        generator = torch.Generator(device=_device_of(prompt))
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
    start = time.perf_counter()
    state = process.init(prompt, generator)
    if cond is not None:
        state = state.remember(cond=cond)
    ts = process.schedule(steps)
    nfe = torch.zeros(state.batch_size, dtype=torch.float64)
    bar = tqdm(total=len(ts) - 1, disable=not progress, desc="decode", leave=False)
    ran = 0
    checked = None  # the logits tensor last checked: a cache wrapper returns the same one again
    for i in range(len(ts) - 1):
        if bool(state.done.all()):
            break
        pred = model(state)
        live = (~state.done).to("cpu", torch.float64)
        nfe += live if pred.nfe is None else pred.nfe.to("cpu", torch.float64) * live
        if pred.logits is not None:
            if pred.logits is not checked:
                _check_finite(pred.logits, state.step)
                checked = pred.logits
            if processors or constraint is not None:
                pred = replace(pred, logits=apply_processors(pred.logits, state, processors, constraint))
        state = process.step(state, pred, ts[i + 1], generator)
        if constraint is not None and state.emitted is not None:
            constraint.advance(state.emitted)
        if callback is not None:
            callback(i, state, pred)
        ran += 1
        bar.update(1)
    bar.close()
    return Result(x=state.x, state=state, nfe=nfe, steps=ran, seconds=time.perf_counter() - start)


def _device_of(prompt: Any) -> torch.device:
    if isinstance(prompt, torch.Tensor):
        return prompt.device
    if isinstance(prompt, dict):
        for v in prompt.values():
            if isinstance(v, torch.Tensor):
                return v.device
    return torch.device("cpu")
