"""The one decode loop: model -> prediction -> processors / constraint -> process step.

Every decoder in the engine (autoregressive tokens, absorbing discrete diffusion, any-order
models, continuous diffusion solvers, one-step decoders) runs through :func:`decode`.
NFE (network function evaluations) is counted here and nowhere else.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from decoding.core.protocols import Constraint, Model, Process, Processor
from decoding.core.row_generators import check_seed
from decoding.core.types import Prediction, Result, State

Callback = Callable[[int, State, Prediction], None]


class NonFiniteLogitsError(FloatingPointError):
    """Raised when a model returns NaN (or +inf) logits; names the step and the rows."""


class _Watch:
    """What the loop must see on the host, kept on the device and read every ``sync_every`` steps.

    ``done`` flags, non-finite logits (the first step where a row had them) and the per-row NFE
    stay where the state lives; :meth:`check` reads them back with one transfer. On the CPU that
    costs nothing, on CUDA it is the only host synchronisation of a step (so the loop can queue
    the next kernels while the GPU runs the current ones). Per step the watch launches three
    kernels (one for the NFE, two for the scan); finding the first bad step waits for the checks.

    Args:
        state: the first state (its batch size and device).
        steps: the most steps the loop can run (the per-step flag buffer holds up to 256 of them
            and is folded into the first bad steps, on the device, when it fills).
    """

    def __init__(self, state: State, steps: int) -> None:
        dev, b = state.done.device, state.batch_size
        self.nfe = torch.zeros(b, dtype=torch.float64, device=dev)  # NFE the model reported (Prediction.nfe)
        self.calls = 0  # calls without a reported NFE: each counts 1 for every live row ...
        self.done_calls = torch.zeros(b, dtype=torch.float64, device=dev)  # ... less the calls a row was done
        self.ok = torch.ones(min(max(steps, 1), 256), b, dtype=torch.bool, device=dev)  # (rows, B): logits < +inf
        self.steps_at: list[int] = []  # state.step of every scan; row r of ``ok`` is scan ``base + r``
        self.base = 0
        self.seen = 0  # rows of ``ok`` folded into ``first_bad``
        self.first_bad = torch.full((b,), -1, dtype=torch.long, device=dev)  # index into ``steps_at``
        self.checked: Tensor | None = None  # the logits tensor last scanned (a cache wrapper returns it again)

    def count(self, state: State, pred: Prediction) -> None:
        if pred.nfe is None:
            self.calls += 1
            self.done_calls.add_(state.done)
        else:
            self.nfe += pred.nfe.to(self.nfe.device, torch.float64, non_blocking=True) * ~state.done

    def scan(self, logits: Tensor, step: int) -> None:
        if logits is self.checked:
            return
        self.checked = logits
        if len(self.steps_at) - self.base == self.ok.shape[0]:  # buffer full: fold it in, start over
            self._bad_steps()
            self.base, self.seen = len(self.steps_at), 0
        row = self.ok[len(self.steps_at) - self.base]
        self.steps_at.append(step)
        # NaN < inf and inf < inf are False, -inf < inf is True: a row is bad unless all its logits are < +inf
        finite = logits < float("inf")
        if finite.device == row.device:
            torch.all(finite.reshape(logits.shape[0], -1), dim=-1, out=row)
        else:
            row.copy_(finite.reshape(logits.shape[0], -1).all(-1), non_blocking=True)

    def _bad_steps(self) -> Tensor:
        """``(B,)`` long: the index (into ``steps_at``) of each row's first bad step, -1 if none."""
        end = len(self.steps_at) - self.base
        if end > self.seen:  # fold in the rows scanned since the last look (each row is read once)
            bad = ~self.ok[self.seen : end]
            first = self.base + self.seen + bad.to(torch.uint8).argmax(0)  # argmax returns the first maximum
            self.first_bad = torch.where((self.first_bad < 0) & bad.any(0), first, self.first_bad)
            self.seen = end
        return self.first_bad

    def check(self, state: State) -> bool:
        """Raise on non-finite logits seen so far; True when every row is done (one host read)."""
        flags = torch.cat([self._bad_steps(), state.done.to(self.first_bad.device).all().long()[None]]).tolist()
        return self._judge(flags[:-1], bool(flags[-1]))

    def finish(self, state: State) -> Tensor:
        """The last :meth:`check` and the per-row NFE in one host read; returns the NFE on the CPU."""
        b = self.nfe.numel()
        nfe = self.nfe + (self.calls - self.done_calls)
        done = state.done.to(self.nfe.device).all().double()[None]
        packed = torch.cat([nfe, self._bad_steps().double(), done]).cpu()  # indices are exact in float64
        self._judge([int(s) for s in packed[b : 2 * b].tolist()], bool(packed[-1]))
        return packed[:b].clone()

    def _judge(self, bad: list[int], all_done: bool) -> bool:
        if any(s >= 0 for s in bad):
            rows = [r for r, s in enumerate(bad) if s >= 0]
            step = self.steps_at[min(bad[r] for r in rows)]
            raise NonFiniteLogitsError(
                f"model returned NaN or +inf logits at step {step} in batch rows {rows[:10]}; "
                "check the model's dtype (try float32) and its inputs"
            )
        return all_done


def apply_processors(
    logits: torch.Tensor,
    state: State,
    processors: Sequence[Processor] = (),
    constraint: Constraint | None = None,
) -> torch.Tensor:
    """Run ``processors`` in order, then the ``constraint``: its reweighting, if it has one, then its mask.

    The constraint is applied last so that truncation (top-k/p, typical) is computed on the
    model's distribution and the grammar removes tokens afterwards, like every peer library.
    A constraint may define ``reweight(logits, state) -> logits`` (grammar-aligned decoding adds
    its estimates there). Rows whose allowed set would be emptied by the processors keep the
    constraint's allowed set.
    """
    out = logits
    for k, proc in enumerate(processors):
        out = proc(out, state)
        if not isinstance(out, torch.Tensor) or out.shape != logits.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"processors[{k}] ({type(proc).__name__}) returned {got}; a processor maps logits "
                             f"{tuple(logits.shape)} to logits of the same shape")
    if constraint is not None:
        reweight = getattr(constraint, "reweight", None)
        if reweight is not None:
            out = reweight(out, state)
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
    sync_every: int | None = None,
) -> Result:
    """Decode ``prompt`` with ``model`` under ``process`` in at most ``steps`` steps.

    Args:
        model: ``state -> Prediction``.
        process: starts the state, gives the time grid and takes steps.
        prompt: what ``process.init`` takes (token ids, a template, a batch size, a shape), or a
            :class:`State` from an earlier call to continue (resume): its rows, done flags, step
            counter and memory (KV cache) are kept and ``steps`` more steps run. A server uses this
            to change the batch between calls (:mod:`decoding.core.rows`). The time grid is the
            process's ``schedule(steps)`` again, so resuming suits processes whose step does not
            depend on the grid (autoregressive decoding).
        steps: number of steps (new tokens for autoregressive processes).
        processors: logits processors, applied in order to ``Prediction.logits``; on CUDA a chain of
            state-free ones (temperature, top-k/p, min-p, typical) is replayed as one CUDA graph
            (:func:`decoding.processors.graphed.graph_chain`: the same kernels, the same numbers).
        constraint: per-row token constraint (grammar); advanced on ``State.emitted``.
        generator: the random source (its device must match the model's). Overrides ``seed``.
            A :class:`~decoding.core.rows.RowGenerators` gives every row its own stream.
        seed: seed for a new generator on the prompt's device when ``generator`` is None.
        cond: conditioning stored in ``state.memory["cond"]`` for models and guidance wrappers.
        callback: ``callback(i, state_after_step, prediction)`` after every step.
        progress: show a tqdm bar.
        sync_every: steps between the host's looks at the device (are all rows done? non-finite
            logits?). Default 1 on the CPU (free) and 8 on other devices, where each look is a
            synchronisation: ``ceil(steps / sync_every)`` looks (before steps ``0, sync_every, ...``)
            and one final read (the last look and the NFE together), nothing else from the loop
            itself. Between looks the loop may run up to ``sync_every - 1`` steps on rows
            that are already done (a finished row is left unchanged by every step, so the output
            is the same; only ``Result.steps`` and the random stream's position can differ).
            Processes, models and constraints that read the device themselves still do.

    Returns:
        :class:`Result` with the final state, per-row NFE ``(B,)`` and wall time.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be >= 1 and a whole number, got {steps!r}")
    if callable(processors) or not all(callable(p) for p in processors):
        raise ValueError(f"processors must be a list of callables (logits, state) -> logits, got {processors!r}")
    check_seed(seed)
    model_mask, process_mask = getattr(model, "mask_id", None), getattr(process, "mask_id", None)
    if model_mask is not None and process_mask is not None and int(model_mask) != int(process_mask):
        raise ValueError(f"the process's mask id {process_mask} is not the model's ({model_mask}): the model reads "
                         f"id {process_mask} as a token; build the process with mask_id={model_mask}")
    if generator is None:
        generator = torch.Generator(device=_device_of(prompt))
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
    start = time.perf_counter()
    ts = process.schedule(steps)
    state = prompt if isinstance(prompt, State) else process.init(prompt, generator)
    state = state.remember(grid=ts)
    if cond is not None:
        state = state.remember(cond=cond)
    if sync_every is None:
        sync_every = 1 if state.done.device.type == "cpu" else 8
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    if processors and state.done.device.type == "cuda":  # a state-free chain as one CUDA graph replay
        from decoding.processors.graphed import graph_chain

        processors = graph_chain(processors, state.done.device)
    watch = _Watch(state, len(ts) - 1)
    bar = tqdm(total=len(ts) - 1, disable=not progress, desc="decode", leave=False)
    ran = 0
    for i in range(len(ts) - 1):
        if i % sync_every == 0 and watch.check(state):
            break
        pred = model(state)
        watch.count(state, pred)
        if pred.logits is not None:
            watch.scan(pred.logits, state.step)
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
    nfe = watch.finish(state)  # the last look and the NFE: one host read
    if isinstance(state.x, torch.Tensor) and state.x.device.type == "cuda" and state.done.device.type != "cuda":
        # the watch's read waited for nothing on the GPU (continuous diffusion keeps ``done`` on the CPU):
        # wait once here, so that ``seconds`` includes the device's work
        torch.cuda.synchronize(state.x.device)
    return Result(x=state.x, state=state, nfe=nfe, steps=ran, seconds=time.perf_counter() - start)


def _device_of(prompt: Any) -> torch.device:
    if isinstance(prompt, State):
        return prompt.x.device
    if isinstance(prompt, torch.Tensor):
        return prompt.device
    if isinstance(prompt, dict):
        for v in prompt.values():
            if isinstance(v, torch.Tensor):
                return v.device
    return torch.device("cpu")
