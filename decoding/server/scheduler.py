"""Continuous batching over the one loop: requests join and leave the running batch between ``decode`` calls.

One thread owns the model. It repeats:

1. run queued exclusive tasks (image requests, grammar-aligned requests: whole ``generate`` calls);
2. admit waiting jobs: prefill their rows with ``decode(..., steps=1)`` (prompt pass + first token);
3. re-batch: :func:`~decoding.core.rows.merge_rows` keeps the running rows that are neither
   finished nor cancelled and appends the new ones (their KV caches move with them);
4. ``decode(model, process, state, steps=k)`` resumes the batch for ``k`` (1..8) steps, then
   hands each job its new tokens.

Every step is the engine's :func:`decoding.decode`; the scheduler only chooses rows. Per-row
settings ride along as per-row objects: :class:`~decoding.processors.rows.RowProcessors`
(sampling), :class:`~decoding.core.row_constraints.RowConstraints` (grammars with each request's
budget), :class:`~decoding.core.row_generators.RowGenerators` (one random stream per sample, so a
sample depends on its seed only) and a per-row greedy flag and stop rule in the process.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from decoding.core.loop import decode
from decoding.core.row_constraints import RowConstraints
from decoding.core.row_generators import RowGenerators, row_seed
from decoding.core.rows import merge_rows, release_rows
from decoding.core.types import State
from decoding.processes.autoregressive import Autoregressive
from decoding.processors.rows import RowProcessors
from decoding.server.jobs import Row, RowUpdate, TextJob
from decoding.server.stops import RowStop


class Scheduler:
    """The model's thread: continuous batching of :class:`TextJob` and exclusive tasks in between.

    Args:
        lm: the causal LM (a :class:`~decoding.adapters.text_lm.TextLM`) or None for models that
            only run tasks (image models).
        max_rows: rows decoded together at most.
        chunk_steps: decode steps between batch changes (default: 1 on the CPU, 8 on CUDA).
        bucket: pad the batch with finished rows to a power of two and the KV cache to a power-of-two
            length, so a compiled / CUDA-graph step sees few shapes (default: on CUDA). Padding
            rows are left unchanged by every step; they cost compute, never change an answer.
    """

    def __init__(self, lm: Any, max_rows: int = 64, chunk_steps: int | None = None, bucket: bool | None = None) -> None:
        self.lm = lm
        self.max_rows = max_rows
        cuda = lm is not None and lm.device.type == "cuda"
        self.chunk_steps = (8 if cuda else 1) if chunk_steps is None else int(chunk_steps)
        self.bucket = cuda if bucket is None else bool(bucket)
        if self.bucket:
            _allow_shapes(64)
        self.rows: list[Row] = []
        self.state: State | None = None
        self._pending: deque[TextJob] = deque()
        self._tasks: deque[tuple[Callable[[], Any], concurrent.futures.Future]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decoding-scheduler", daemon=True)
        self.steps_run = 0  # decode steps of the shared batch (for tests and /health)
        self.max_rows_seen = 0  # the largest batch so far

    # ---- the HTTP side ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def submit(self, job: TextJob) -> None:
        """Queue ``job`` for the next admission."""
        if self.lm is None:
            raise RuntimeError("this model decodes no text")
        with self._lock:
            self._pending.append(job)
        self._wake.set()

    def run_task(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``fn()`` on the model's thread between two batch steps; its result as a future."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._tasks.append((fn, future))
        self._wake.set()
        return future

    def load(self) -> dict[str, int]:
        """Rows in the batch, jobs waiting and steps run (read by ``/health``)."""
        with self._lock:
            rows = sum(1 for r in self.rows if not r.padding)
            return {"running_rows": rows, "waiting_jobs": len(self._pending), "steps": self.steps_run}

    # ---- the model's thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._run_tasks()
            admitted = self._admit()
            if not self.rows and not admitted:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            jobs = {id(r.job): r.job for r in self.rows} | {id(j): j for j in admitted}
            try:
                self._advance(admitted)
            except Exception as e:  # the model or a constraint failed: every affected job gets the error
                for job in jobs.values():
                    job.deliver(e)
                self._reset()

    def _reset(self) -> None:
        if self.state is not None:
            release_rows(self.lm.model, self.state)
        with self._lock:
            self.rows, self.state = [], None

    def _run_tasks(self) -> None:
        while True:
            with self._lock:
                if not self._tasks:
                    return
                fn, future = self._tasks.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as e:  # handed to the waiting request
                future.set_exception(e)

    def _admit(self) -> list[TextJob]:
        room = self.max_rows - sum(1 for r in self.rows if r.finish is None and not r.padding)
        out = []
        with self._lock:
            while self._pending and (self._pending[0].n <= room or not out and not self.rows):
                job = self._pending.popleft()
                if job.cancelled.is_set():
                    continue
                out.append(job)
                room -= job.n
        return out

    def _new_rows(self, jobs: list[TextJob]) -> list[Row]:
        dev = self.lm.device
        rows = []
        for job in jobs:
            try:  # a job whose rows cannot be set up (its seed, its constraint) fails alone, not the batch
                chain = tuple(job.sampling.processors())
                mine = []
                for j in range(job.n):
                    g = torch.Generator(device=dev).manual_seed(row_seed(job.seed, j))
                    cons = None
                    if job.grammar is not None:
                        cons = job.grammar.constraint(1, dev, max_tokens=job.max_tokens)
                    mine.append(Row(job=job, choice=j, generator=g, chain=chain, constraint=cons))
            except Exception as e:
                job.deliver(e)
                continue
            rows.extend(mine)
        return rows

    def _decode(self, rows: list[Row], prompt: Any, steps: int) -> tuple[State, list[list[int]], dict]:
        """``decode`` over ``rows`` (a prompt batch or the running state); returns the state, the
        tokens each row emitted per step (``-1``: none) and the logprobs collected."""
        lm = self.lm
        greedy = [r.job.sampling.greedy for r in rows]
        process = Autoregressive(
            eos_token_id=list(lm.eos_token_ids) or None, pad_token_id=lm.pad_token_id,
            greedy=greedy[0] if len(set(greedy)) == 1 else torch.tensor(greedy, device=lm.device),
            stop=RowStop(lm.tokenizer, rows, lm.device),
        )
        procs = RowProcessors([r.chain for r in rows])
        constraint = None
        if any(r.constraint is not None for r in rows):
            width = getattr(lm.model, "vocab_size", None) or len(lm.tokenizer)
            constraint = RowConstraints([r.constraint for r in rows], width, lm.device)
        want = [(i, r.job.logprobs) for i, r in enumerate(rows) if r.job.logprobs is not None]
        emitted: list[torch.Tensor] = []
        logprobs: dict[int, list] = {i: [] for i, _ in want}

        def collect(i: int, state: State, pred: Any) -> None:
            emitted.append(state.emitted)
            if want:
                _collect_logprobs(pred.logits, state.emitted, want, logprobs)

        res = decode(lm.model, process, prompt, steps=steps, processors=[procs] if procs else (), constraint=constraint,
                     generator=RowGenerators(r.generator for r in rows), callback=collect)
        return res.state, torch.stack(emitted, 1).tolist(), logprobs

    def _advance(self, admitted: list[TextJob]) -> None:
        lm = self.lm
        new_state = None
        new_rows = self._new_rows(admitted) if admitted else []
        if new_rows:
            width = max(len(r.job.prompt_ids) for r in new_rows)
            ids = torch.full((len(new_rows), width), lm.pad_token_id, dtype=torch.long)
            mask = torch.zeros(len(new_rows), width, dtype=torch.bool)
            for i, r in enumerate(new_rows):
                p = r.job.prompt_ids
                ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
                mask[i, width - len(p):] = True
            prompt = {"input_ids": ids.to(lm.device), "attention_mask": mask.to(lm.device)}
            new_state, tokens, lps = self._decode(new_rows, prompt, 1)
            self._hand_out(new_rows, new_state, tokens, lps)
        self._regroup(new_state, new_rows)
        if not self.rows:
            return
        self.max_rows_seen = max(self.max_rows_seen, sum(1 for r in self.rows if not r.padding))
        live = [r.remaining for r in self.rows if not r.padding]
        steps = max(1, min(self.chunk_steps, min(live)))
        state, tokens, lps = self._decode(self.rows, self.state, steps)
        self.steps_run += steps
        self.state = state
        self._hand_out(self.rows, state, tokens, lps)

    def _regroup(self, new_state: State | None, new_rows: list[Row]) -> None:
        def wanted(r: Row) -> bool:
            return r.finish is None and not r.padding and not r.job.cancelled.is_set()

        keep = [i for i, r in enumerate(self.rows) if wanted(r)]
        fresh = [i for i, r in enumerate(new_rows) if wanted(r)]
        if new_state is None and len(keep) == sum(1 for r in self.rows if not r.padding):
            return
        parts = []
        if keep:
            parts.append((self.state, keep))
        if fresh:
            parts.append((new_state, fresh))
        rows = [self.rows[i] for i in keep] + [new_rows[i] for i in fresh]
        state = None
        if parts:
            room = max(r.remaining for r in rows) + 1
            pad = 0
            if self.bucket:  # powers of two: few shapes for compiled steps and CUDA graphs
                pad = (1 << (len(rows) - 1).bit_length()) - len(rows)
                last = parts[-1]
                parts[-1] = (last[0], list(last[1]) + [last[1][0]] * pad)
                width = max(s.x.shape[1] for s, _ in parts)
                room = (1 << (width + room).bit_length()) - width - 1
            state = merge_rows(self.lm.model, parts, pad_token_id=self.lm.pad_token_id, room=room)
            if pad:
                done = state.done.clone()
                done[len(rows):] = True
                state = replace(state, done=done)
                rows += [Row.pad(self.lm.device) for _ in range(pad)]
        if self.state is not None:
            release_rows(self.lm.model, self.state)
        with self._lock:
            self.rows, self.state = rows, state

    def _hand_out(self, rows: list[Row], state: State, tokens: list[list[int]], lps: dict[int, list]) -> None:
        done = state.done.tolist()
        eos = set(self.lm.eos_token_ids)
        updates: dict[int, tuple[TextJob, list[RowUpdate]]] = {}
        for i, r in enumerate(rows):
            if r.finish is not None or r.padding:
                continue
            new = [t for t in tokens[i] if t >= 0]
            r.tokens.extend(new)
            if done[i]:
                r.finish = _finish_reason(r, eos, self.lm)
            limited = bool(r.constraint.limited[0]) if r.constraint is not None else False
            upd = RowUpdate(r.choice, new, lps.get(i), r.finish, limited)
            updates.setdefault(id(r.job), (r.job, []))[1].append(upd)
        for job, ups in updates.values():
            if not job.cancelled.is_set():
                job.deliver(ups)


def _allow_shapes(n: int) -> None:
    """Let ``torch.compile`` keep ``n`` compiled shapes of the decode step (bucketed batch sizes x cache
    lengths); past dynamo's default of 8 it would run new shapes eagerly."""
    import torch._dynamo.config as dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if getattr(dynamo, name, n) < n:
            setattr(dynamo, name, n)


def _finish_reason(row: Row, eos: set[int], lm: Any) -> str:
    if row.tokens and row.tokens[-1] in eos:
        return "stop"
    if row.job.stops:
        text = lm.decode(row.tokens)
        if any(s in text for s in row.job.stops):
            return "stop"
    return "length"


def _collect_logprobs(logits: torch.Tensor, emitted: torch.Tensor, want: list[tuple[int, int]], out: dict) -> None:
    """Append ``(logprob, top alternatives)`` of each wanted row's emitted token (the distribution it
    was drawn from: after sampling settings and constraint)."""
    idx = torch.tensor([i for i, _ in want], device=logits.device)
    lp = torch.log_softmax(logits.index_select(0, idx).float(), dim=-1)
    tok = emitted.index_select(0, idx.to(emitted.device)).to(logits.device)
    chosen = lp.gather(1, tok.clamp(min=0)[:, None])[:, 0].tolist()
    k = max(k for _, k in want)
    top = lp.topk(max(k, 1), dim=-1) if k else None
    toks = tok.tolist()
    for j, (i, ki) in enumerate(want):
        if toks[j] < 0:
            continue
        alts = []
        if ki and top is not None:
            vals, ids = top.values[j, :ki].tolist(), top.indices[j, :ki].tolist()
            alts = [(t, v) for t, v in zip(ids, vals, strict=True) if v > float("-inf")]
        out[i].append((chosen[j], alts))
