"""``decoding train MODEL --benchmark``: time the training step of a model in a few set-ups, one run.

Each variant builds the real :class:`~decoding.train.loop.Trainer` (data on the device, the
model's preset batch), runs warm-up steps (compilation, cuDNN autotuning), then times
``steps`` steps between two device synchronisations. The first variant is the reference the
others are divided by: the set-up of the shipped runs (eager, the preset's memory format). On
CUDA the timed steps run under ``torch.cuda.set_sync_debug_mode("warn")``, and the number of host
synchronisations per step is printed (the skeleton's step should have none). Nothing is saved.
"""

from __future__ import annotations

import dataclasses
import gc
import tempfile
import time
import warnings
from typing import Any

import torch

from decoding.train.loop import Trainer, device_name
from decoding.train.task import Task, TrainOptions


def variants(task: Task, options: TrainOptions) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(label, option changes, task config changes)`` to compare; the first is the reference."""
    out: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("eager", {"compile": False}, {})]
    if getattr(task.config, "channels_last", None) is True:
        out.append(("eager, NCHW", {"compile": False}, {"channels_last": False}))
    out.append(("torch.compile", {"compile": True, "compile_mode": "default"}, {}))
    if torch.device(options.device).type == "cuda":
        out.append(("torch.compile reduce-overhead", {"compile": True, "compile_mode": "reduce-overhead"}, {}))
    return out


def time_steps(trainer: Trainer, steps: int, warmup: int = 3) -> dict[str, float]:
    """Seconds per step of ``steps`` training steps after ``warmup`` ones; host syncs per step on CUDA."""
    trainer._started_at = ""
    trainer._bar = None
    trainer._build()
    for _ in range(warmup):
        trainer._train_step()
    trainer._sync()
    syncs = 0
    cuda = trainer.device.type == "cuda"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        start = time.perf_counter()
        try:
            for _ in range(steps):
                trainer._train_step()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
        launched = time.perf_counter()
        trainer._sync()
        end = time.perf_counter()
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    return {"seconds_per_step": (end - start) / steps, "host_seconds_per_step": (launched - start) / steps,
            "syncs_per_step": syncs / steps}


def profile_steps(trainer: Trainer, steps: int = 5, rows: int = 25) -> str:
    """``torch.profiler`` table of ``steps`` more training steps of a built trainer (device time first)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if trainer.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            trainer._train_step()
        trainer._sync()
    key = "cuda_time_total" if trainer.device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def benchmark(name: str, task: Task, options: TrainOptions, steps: int = 20, profile: bool = False) -> list[dict[str, Any]]:
    """Time the variants of :func:`variants`; print a table with the ratio to the first (and, with
    ``profile``, the profiler's table of the reference's steps); return the rows."""
    if steps < 1:
        raise ValueError(f"--benchmark-steps must be >= 1, got {steps}")
    rows: list[dict[str, Any]] = []
    base_config = dataclasses.asdict(task.config)
    for label, opt_changes, task_changes in variants(task, options):
        # the schedule's length does not matter here (steps only has to be given)
        opts = dataclasses.replace(options, **opt_changes, steps=10**9, minutes=None, stop_at=None, log_every=10**9,
                                   val_every=10**9, progress=False)
        variant_task = type(task)(type(task.config)(**{**base_config, **task_changes}))
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(name, variant_task, opts, tmp, out=None)
            timing = time_steps(trainer, steps)
            if profile and not rows:
                print(f"profile of the reference ({label}):\n{profile_steps(trainer)}")
        compiled = trainer.forward is not trainer.net
        del trainer
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        row = {"variant": label + ("" if compiled or not opts.compile else " (fell back to eager)"), **timing,
               "steps_per_second": 1.0 / timing["seconds_per_step"],
               "examples_per_second": opts.batch_size / timing["seconds_per_step"]}
        rows.append(row)
    ref = rows[0]["seconds_per_step"]
    dev = torch.device(options.device)
    print(f"{name}: batch {options.batch_size}, {steps} timed steps per variant on {device_name(dev)} "
          f"(torch {torch.__version__}); ratio = reference time / variant time")
    print(f"{'variant':34s} {'ms/step':>9s} {'host ms':>8s} {'steps/s':>8s} {'examples/s':>11s} {'ratio':>6s} {'syncs/step':>10s}")
    for r in rows:
        print(f"{r['variant']:34s} {r['seconds_per_step'] * 1e3:9.2f} {r['host_seconds_per_step'] * 1e3:8.2f} "
              f"{r['steps_per_second']:8.2f} {r['examples_per_second']:11.0f} {ref / r['seconds_per_step']:6.2f} "
              f"{r['syncs_per_step']:10.2f}")
    return rows
