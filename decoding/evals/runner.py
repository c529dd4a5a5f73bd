"""Run an eval suite: draw every config's samples in chunks, score them, store, summarize, report.

Sample ``i`` of a task lies in chunk ``i // batch``; the chunk's generator is seeded from the
suite seed, the task name and the chunk number only, so

- every config of a task sees the same random numbers (paired comparisons: the same initial
  noise for every solver, the same uniforms for every sampler), and
- the samples do not depend on how many processes ran or which rank drew a chunk.

Finished chunks are stored at once (atomically) and skipped by the next run into the same
folder, which then only draws what is missing and rebuilds the summary and the report. A chunk
counts as finished only if it holds the very samples this run would draw into it (its stored
name holds its size, :func:`decoding.evals.storage.chunk_name`): a chunk cut short by
``--limit`` is drawn again in full, and the summary reads exactly the run's ``samples``.
"""

from __future__ import annotations

import io
import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from decoding.evals.base import mean
from decoding.evals.distributed import World
from decoding.evals.storage import Store, atomic_write_bytes, atomic_write_json, atomic_write_text, chunk_name
from decoding.evals.suite import Suite, derive_seed
from decoding.evals.tasks import BuiltConfig, BuiltTask, build

TIME_KEYS = ("seconds",)
"""Record fields that measure time: the only ones that differ between two runs of one suite."""


@dataclass(frozen=True)
class Unit:
    """One chunk of one config: ``(task index, config index, chunk number)``."""

    task: int
    config: int
    chunk: int


def chunk_indices(samples: int, batch: int, chunk: int) -> list[int]:
    return list(range(chunk * batch, min((chunk + 1) * batch, samples)))


def _n_samples(task: BuiltTask, limit: int | None) -> int:
    return task.spec.samples if limit is None else min(task.spec.samples, limit)


def _chunks(task: BuiltTask, limit: int | None) -> range:
    n = _n_samples(task, limit)
    return range((n + task.spec.batch - 1) // task.spec.batch)


def _chunk_name(task: BuiltTask, chunk: int, samples: int) -> str:
    """The stored name of ``chunk`` of a config of ``task`` that draws ``samples`` samples."""
    return chunk_name(chunk, len(chunk_indices(samples, task.spec.batch, chunk)), task.spec.batch)


def draw_chunk(
    suite: Suite, task: BuiltTask, bc: BuiltConfig, chunk: int, samples: int
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Draw and score one chunk; returns its records (as in ``results.jsonl``) and tensors."""
    spec = task.spec
    indices = chunk_indices(samples, spec.batch, chunk)
    seed = derive_seed(suite.seed, spec.name, chunk)
    gen = torch.Generator(device=bc.job.device).manual_seed(seed)
    batch = bc.job.run(indices, gen)
    scores: list[dict[str, float]] = [{} for _ in indices]
    for m in task.metrics:
        values = m.score(bc.job, batch)
        if values:
            if len(values) != len(indices):
                raise RuntimeError(f"metric {m.name} scored {len(values)} of {len(indices)} samples")
            for s, v in zip(scores, values, strict=True):
                s.update(v)
    per = batch.seconds / len(indices)
    records = [
        {
            "task": spec.name,
            "config": bc.config.index,
            "config_id": bc.config_id,
            "label": bc.config.label,
            "model": spec.model,
            "decoder": spec.decoder,
            "settings": bc.config.settings,
            "index": i,
            "chunk": chunk,
            "seed": seed,
            "nfe": float(batch.nfe[k]),
            "seconds": per,
            "output": batch.outputs[k],
            "metrics": scores[k],
        }
        for k, i in enumerate(indices)
    ]
    return records, {k: v.detach().cpu() for k, v in batch.tensors.items()}


def pending_units(
    tasks: list[BuiltTask], store: Store, limit: int | None
) -> tuple[list[Unit], dict[tuple[int, int], bytes | None]]:
    """The chunks still to draw, and for each sequential config the state to start it from.

    A sequential job (``job.sequential``, e.g. grammar-aligned decoding, which learns across
    samples) resumes after its last finished chunk from the state stored with that chunk.
    """
    units: list[Unit] = []
    initial: dict[tuple[int, int], bytes | None] = {}
    for ti, t in enumerate(tasks):
        chunks = list(_chunks(t, limit))
        names = [_chunk_name(t, c, _n_samples(t, limit)) for c in chunks]
        for ci, bc in enumerate(t.configs):
            missing = [c for c in chunks if not store.has_chunk(t.spec.name, bc.config_id, names[c])]
            if getattr(bc.job, "sequential", False) and missing:
                first = missing[0]
                if missing != chunks[first:]:
                    raise ValueError(
                        f"task {t.spec.name!r} config {bc.config.label}: finished chunks after missing chunk {first}; "
                        f"delete {store.config_dir(t.spec.name, bc.config_id)} to draw the config again"
                    )
                initial[(ti, ci)] = (
                    store.read_state(t.spec.name, bc.config_id, names[first - 1]) if first else None
                )
            units += [Unit(ti, ci, c) for c in missing]
    return units, initial


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    device: str | torch.device = "cpu",
    world: World | None = None,
    progress: bool = True,
    limit: int | None = None,
    only: Sequence[str] | None = None,
    report: bool = True,
) -> dict[str, Any] | None:
    """Run (or resume) ``suite`` into the folder ``out``.

    Args:
        device: the device of this rank's models.
        world: this process's rank among ``torchrun``'s (default: a single process).
        limit: at most this many samples per task (smoke runs; the seeds do not change).
        only: run only the tasks with these names.
        report: write ``report.md`` and the plots.

    Returns:
        The summary (also written to ``summary.json``) on rank 0; ``None`` on other ranks.
    """
    world = world or World()
    device = torch.device(device)
    if only:
        names = [t.name for t in suite.tasks]
        bad = sorted(set(only) - set(names))
        if bad:
            raise ValueError(f"--only names unknown task(s) {bad}; the suite has {names}")
        suite = Suite(
            suite.name,
            suite.seed,
            tuple(t for t in suite.tasks if t.name in only),
            suite.description,
            suite.path,
        )
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    tasks = build(suite, device)  # every name, argument and metric is checked before sampling
    store = Store(out)
    plan: tuple[list[Unit], dict[tuple[int, int], bytes | None]] = ([], {})
    if world.is_main:
        store.out.mkdir(parents=True, exist_ok=True)
        if suite.path is not None:
            atomic_write_text(store.out / "suite.toml", suite.path.read_text(encoding="utf-8"))
        plan = pending_units(tasks, store, limit)
    units, initial = world.broadcast(plan)
    total = sum(
        len(chunk_indices(_n_samples(tasks[u.task], limit), tasks[u.task].spec.batch, u.chunk)) for u in units
    )
    bar = tqdm(
        total=total, desc=f"eval {suite.name}", unit="sample", disable=not (progress and world.is_main)
    )
    loaded: set[tuple[int, int]] = set()
    for rnd in world.rounds(units, lambda u: (u.task, u.config) if (u.task, u.config) in initial else None):
        mine = rnd[world.rank]
        payload: Any = None
        if mine is not None:
            t = tasks[mine.task]
            bc = t.configs[mine.config]
            key = (mine.task, mine.config)
            try:
                if key in initial and key not in loaded:
                    bc.job.set_state(initial[key])
                    loaded.add(key)
                records, tensors = draw_chunk(suite, t, bc, mine.chunk, _n_samples(t, limit))
                state = bc.job.get_state() if key in initial else None
                payload = (mine, records, tensors, state)
            except Exception as e:  # noqa: BLE001 - reported on rank 0, raised on every rank
                if world.size == 1:
                    raise
                payload = ("error", f"rank {world.rank}: {type(e).__name__}: {e}")
        got = world.gather(payload)
        error = None
        if world.is_main:
            for p in got or []:
                if p is None:
                    continue
                if p[0] == "error":
                    error = p[1]
                    continue
                u, records, tensors, state = p
                t = tasks[u.task]
                name = _chunk_name(t, u.chunk, _n_samples(t, limit))
                store.write_chunk(t.spec.name, t.configs[u.config].config_id, name, records, tensors, state)
                bar.update(len(records))
        error = world.broadcast(error)
        if error:
            raise RuntimeError(f"a rank failed while drawing samples: {error}")
    bar.close()
    summary = None
    if world.is_main:
        summary = finish(suite, tasks, store, device, world, limit, report)
    world.barrier()
    return summary


def finish(
    suite: Suite,
    tasks: list[BuiltTask],
    store: Store,
    device: torch.device,
    world: World,
    limit: int | None,
    report: bool,
) -> dict[str, Any]:
    """Rebuild ``results.jsonl`` from the chunk files, summarize every config, write the report."""
    lines: list[str] = []
    task_summaries = []
    for t in tasks:
        n = _n_samples(t, limit)
        chunks = [_chunk_name(t, c, n) for c in _chunks(t, limit)]
        configs = []
        for bc in t.configs:
            records = _read_config(store, t, bc, n)
            lines += [json.dumps(r, separators=(",", ":")) for r in records]
            seconds = sum(r["seconds"] for r in records)
            row: dict[str, Any] = {
                "config": bc.config.index,
                "config_id": bc.config_id,
                "label": bc.config.label,
                "settings": bc.config.settings,
                "samples": len(records),
                "nfe": mean([r["nfe"] for r in records]),
                "seconds": seconds,
                "samples_per_s": len(records) / seconds if seconds else float("nan"),
            }

            def artifacts(
                name: str, _t: BuiltTask = t, _bc: BuiltConfig = bc, _c: list[str] = chunks
            ) -> torch.Tensor:
                return store.read_tensor(_t.spec.name, _bc.config_id, _c, name)

            for m in t.metrics:
                row.update(m.summarize(bc.job, records, artifacts))
            configs.append(row)
        task_summaries.append(
            {
                "name": t.spec.name,
                "kind": t.spec.kind,
                "model": t.spec.model,
                "model_args": t.spec.model_args,
                "decoder": t.spec.decoder,
                "description": t.spec.description,
                "metrics": list(t.spec.metrics),
                "primary": [k for m in t.metrics for k in getattr(m, "primary", ())],
                "configs": configs,
            }
        )
    atomic_write_text(store.out / "results.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    summary = {
        "suite": suite.name,
        "description": suite.description,
        "seed": suite.seed,
        "limit": limit,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "world_size": world.size,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "tasks": task_summaries,
    }
    atomic_write_json(store.out / "summary.json", summary)
    if report:
        from decoding.evals.report import write_report

        write_report(store.out, summary, suite, images=lambda name, cfg: _grid(store, tasks, name, cfg))
    return summary


def _read_config(store: Store, task: BuiltTask, bc: BuiltConfig, samples: int) -> list[dict[str, Any]]:
    """The records of samples ``0 .. samples - 1`` of config ``bc``, in index order.

    Raises:
        ValueError: a stored chunk holds other samples than its name says (e.g. one cut short by
            ``--limit`` before chunk names held their size).
    """
    out: list[dict[str, Any]] = []
    for c in range((samples + task.spec.batch - 1) // task.spec.batch):
        name = _chunk_name(task, c, samples)
        records = sorted(store.read_records(task.spec.name, bc.config_id, [name]), key=lambda r: r["index"])
        want = chunk_indices(samples, task.spec.batch, c)
        if [r["index"] for r in records] != want:
            path = store.config_dir(task.spec.name, bc.config_id) / f"{name}.json"
            raise ValueError(
                f"{path} holds samples {[r['index'] for r in records]}, not {want}; delete it to draw it again"
            )
        out += records
    return out


def _grid(store: Store, tasks: list[BuiltTask], name: str, cfg: dict[str, Any], n: int = 64) -> str | None:
    """PNG grid of the first ``n`` images of an image config (``plots/<task>-c<k>-samples.png``)."""
    t = next(t for t in tasks if t.spec.name == name)
    if t.spec.kind != "image":
        return None
    from decoding.api.generation import make_grid

    first = range((min(n, cfg["samples"]) + t.spec.batch - 1) // t.spec.batch)
    chunks = [_chunk_name(t, c, cfg["samples"]) for c in first]
    images = store.read_tensor(name, cfg["config_id"], chunks, "images")[:n]
    rel = f"plots/{name}-c{cfg['config']}-samples.png"
    (store.out / "plots").mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    make_grid(images, nrow=16, scale=2).save(buf, format="PNG")
    atomic_write_bytes(store.out / rel, buf.getvalue())
    return rel
