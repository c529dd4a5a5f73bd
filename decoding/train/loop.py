"""The training skeleton every trainer runs: AdamW, schedules, EMA, bf16, budget, validation, resume.

One step: the sampler's next batch of example indices -> ``task.loss`` (bf16 autocast on CUDA) ->
backward -> gradient clipping -> AdamW (fused on CUDA) at the scheduled learning rate -> EMA update.
Nothing in a step reads a value back from the device: the training loss is summed on the device
and read every ``log_every`` steps, validation runs every ``val_every`` steps.

A run is a sequence of sessions (processes). Each session ends at ``--minutes``, ``--stop-at`` or
the last step, and writes a resume checkpoint (:mod:`decoding.train.checkpoint`) there and every
``checkpoint_minutes``: weights, EMA, Adam's moments and step counts, the sampler position, the
CPU / CUDA / training generators' states, the loss accumulator, the history and the options. The
learning-rate and EMA schedules are functions of the step, so with float32 checkpoints a resumed
run computes exactly what the uninterrupted run computes (bit-identical weights on the CPU; on CUDA
up to non-deterministic kernels). A session then exports the shipped model (``task.export`` plus
``train_log.json`` and ``loss.png``) from the EMA weights.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from decoding.data.weights import dtype_from_name
from decoding.io import atomic_write_bytes
from decoding.train import checkpoint as ckpt
from decoding.train.plot import plot_history
from decoding.train.sampler import EpochSampler
from decoding.train.schedules import ema_decay, learning_rate
from decoding.train.task import Task, TrainOptions, config_dict

MAX_SHIPPED_BYTES = 16 * 2**20
_RESERVE_S = 10.0  # seconds kept for the final checkpoint and export before the first save is timed
_COMPILE_TRIALS = 3  # steps guarded against torch.compile failures (compiling, recording CUDA graphs)


@dataclass
class SessionResult:
    """What one :meth:`Trainer.run` did."""

    step: int
    total: int | None
    reason: str  # "done", "budget", "stop-at"
    seconds: float
    checkpoint: ckpt.WrittenCheckpoint | None = None
    exported: list[Path] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.reason == "done"


def _float_state(module: nn.Module) -> list[Tensor]:
    return [t for t in module.state_dict().values() if t.is_floating_point()]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


class Trainer:
    """Runs one session of a (possibly resumed) training run of ``task``.

    Args:
        name: the model's name (``fashion-large``...), recorded in the checkpoint and checked on resume.
        task: the model-specific part.
        options: the skeleton's options.
        checkpoint_dir: the resume checkpoint's folder.
        out: the shipped model folder written at the end of the session (``None``: no export).
        resume: continue the checkpoint in ``checkpoint_dir`` (its options must equal ``options``
            except :attr:`TrainOptions.SESSION`, and the task config except ``task.SESSION``).
        command: the command line, recorded in the logs.
    """

    def __init__(
        self, name: str, task: Task, options: TrainOptions, checkpoint_dir: str | Path, out: str | Path | None = None,
        resume: bool = False, command: str = "",
    ) -> None:
        options.check()
        self.name, self.task, self.opts = name, task, options
        self.checkpoint_dir = Path(checkpoint_dir)
        self.out = None if out is None else Path(out)
        self.resume, self.command = resume, command
        self.device = torch.device(options.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {options.device}: CUDA is not available on this machine; use --device cpu")
        if resume and not ckpt.has_checkpoint(self.checkpoint_dir):
            raise ckpt.CheckpointNotFoundError(
                f"--resume: no checkpoint in {self.checkpoint_dir} (no {ckpt.STATE_FILE}); start the run without --resume"
            )
        if not resume and ckpt.has_checkpoint(self.checkpoint_dir):
            step = ckpt.read_state(self.checkpoint_dir).get("step")
            raise ValueError(
                f"{self.checkpoint_dir} already holds a checkpoint (step {step}): pass --resume to continue it, "
                "or choose another --checkpoint folder"
            )
        self.amp = self.device.type == "cuda"
        self.has_ema = options.ema_decay is not None or options.ema_std is not None

    # ---- set-up ----------------------------------------------------------------------------

    def _build(self, data_info: dict[str, Any] | None = None) -> None:
        """Data (``task.setup``; or, to export a checkpoint without its data, ``task.bind(data_info)``),
        network, EMA, optimizer, generators and sampler; then the checkpoint when resuming."""
        opts, dev = self.opts, self.device
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.export_only = data_info is not None
        if data_info is None:
            self.data_info = {**self.task.setup(dev), "examples_per_epoch": self.task.examples_per_epoch()}
            n_examples = self.task.num_examples
        else:
            self.data_info = data_info
            self.task.bind(data_info)
            n_examples = int(ckpt.read_state(self.checkpoint_dir)["sampler"]["n"])
        torch.manual_seed(opts.seed)
        if dev.type == "cuda":
            torch.cuda.manual_seed_all(opts.seed)
        net = self.task.build()
        self.n_params = sum(p.numel() for p in net.parameters())
        shipped = sum(t.numel() for t in net.state_dict().values()) * dtype_from_name(opts.save_dtype).itemsize
        if shipped > MAX_SHIPPED_BYTES - 65536:
            raise ValueError(
                f"{self.name}: {self.n_params:,} parameters make a {shipped / 2**20:.1f} MiB shipped file in "
                f"{opts.save_dtype}, over the 16 MiB limit; make the model smaller"
            )
        self.net = self.task.prepare(net, dev).train()
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False) if self.has_ema else None
        decay = [p for p in self.net.parameters() if p.dim() >= 2]
        rest = [p for p in self.net.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opts.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=opts.lr, betas=(opts.beta1, opts.beta2), fused=True if dev.type == "cuda" else None,
        )
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        self.gen = torch.Generator(device=dev).manual_seed(opts.seed)
        self.sampler = EpochSampler(n_examples, opts.batch_size, opts.seed, dev)
        self.step, self.total = 0, opts.steps
        self.planned_by = "steps" if opts.steps is not None else "time"
        self.loss_acc = torch.zeros((), device=dev)
        self.loss_count = 0
        self.history: dict[str, list] = {"train": [], "valid": []}
        self.sessions: list[dict[str, Any]] = []
        self.seconds_before = 0.0
        self.best: dict[str, Any] | None = None
        self.best_state: dict[str, Tensor] | None = None
        self._ema_pairs: tuple[list[Tensor], list[Tensor]] | None = None
        self.forward = self.net
        if opts.compile:
            try:
                self.forward = torch.compile(self.net, mode=opts.compile_mode)
            except Exception as e:  # pragma: no cover - depends on the installation
                self._warn(f"torch.compile is unavailable ({type(e).__name__}: {e}); training eagerly")
        self._compile_trials = _COMPILE_TRIALS if opts.compile else 0
        if self.resume:
            self._load()

    def _ema_targets(self) -> tuple[list[Tensor], list[Tensor]]:
        """The EMA's floating tensors and the network's, in the same order (built once; views of the modules)."""
        if self._ema_pairs is None:
            assert self.ema is not None
            self._ema_pairs = (_float_state(self.ema), _float_state(self.net))
        return self._ema_pairs

    # ---- one step ----------------------------------------------------------------------------

    def _loss(self, idx: Tensor) -> Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return self.task.loss(self.forward, idx, self.gen)

    def _train_step(self) -> None:
        opts = self.opts
        idx = self.sampler.next()
        lr = learning_rate(self.step, self.total or 10**12, opts.lr, opts.warmup, opts.min_lr_ratio)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        if self._compile_trials:
            loss = self._guarded_compiled_step(idx)
        else:
            loss = self._loss(idx)
            loss.backward()
        if opts.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, opts.grad_clip)
        self.opt.step()
        self.step += 1
        if self.ema is not None:
            beta = ema_decay(self.step, opts.ema_decay, opts.ema_std)
            ema_t, net_t = self._ema_targets()
            with torch.no_grad():
                torch._foreach_lerp_(ema_t, net_t, 1.0 - beta)
            for b_ema, b in zip(self.ema.buffers(), self.net.buffers(), strict=True):
                if not b.is_floating_point():
                    b_ema.copy_(b)
        self.loss_acc += loss.detach().float()
        self.loss_count += 1

    def _guarded_compiled_step(self, idx: Tensor) -> Tensor:
        """One of the first steps through ``torch.compile`` (compilation, CUDA-graph recording); on a
        failure, warn and redo the step eagerly with the same random draws, and stay eager."""
        gen_state = self.gen.get_state()
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        try:
            loss = self._loss(idx)
            loss.backward()
        except Exception as e:
            self._warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); training eagerly")
            self.forward = self.net
            self.gen.set_state(gen_state)
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, self.device)
            self.opt.zero_grad(set_to_none=True)
            loss = self._loss(idx)
            loss.backward()
            self._compile_trials = 1
        self._compile_trials -= 1
        return loss

    # ---- logging and validation --------------------------------------------------------------

    def _flush_loss(self) -> float:
        """Record the mean training loss since the last record (one device sync)."""
        mean = float(self.loss_acc) / max(self.loss_count, 1)
        lr = learning_rate(self.step - 1, self.total or 10**12, self.opts.lr, self.opts.warmup, self.opts.min_lr_ratio)
        self.history["train"].append([self.step, mean, lr])
        self.loss_acc.zero_()
        self.loss_count = 0
        return mean

    @torch.no_grad()
    def _validate_net(self, net: nn.Module) -> dict[str, float]:
        was = net.training
        net.eval()
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                metrics = self.task.validate(net)
        finally:
            net.train(was)
        if "loss" not in metrics:
            raise ValueError(f"{type(self.task).__name__}.validate must return a 'loss' entry, got {sorted(metrics)}")
        return {k: float(v) for k, v in metrics.items()}

    def _validate(self) -> dict[str, Any]:
        raw = self._validate_net(self.net)
        row: dict[str, Any] = {"step": self.step}
        if self.ema is not None:
            ema = self._validate_net(self.ema)
            row.update(ema)
            row["loss_raw"] = raw["loss"]
        else:
            row.update(raw)
        self.history["valid"].append(row)
        if self.best is None or row["loss"] < self.best["loss"]:
            self.best = {"step": self.step, "loss": row["loss"]}
            if self.opts.keep_best and self.ema is not None:
                dtype = dtype_from_name(self.opts.save_dtype)
                self.best_state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype, copy=True)
                                   for k, v in self.ema.state_dict().items()}
        return row

    # ---- checkpoints -------------------------------------------------------------------------

    def _checkpoint_tensors(self) -> dict[str, Tensor]:
        wdt = dtype_from_name(self.opts.checkpoint_weights)
        mdt = dtype_from_name(self.opts.checkpoint_moments)

        def cast(t: Tensor, dtype: torch.dtype) -> Tensor:
            return t.detach().to(dtype) if t.is_floating_point() else t.detach()

        out = {f"model/{k}": cast(v, wdt) for k, v in self.net.state_dict().items()}
        if self.ema is not None:
            out.update({f"ema/{k}": cast(v, wdt) for k, v in self.ema.state_dict().items()})
        for i, state in self.opt.state_dict()["state"].items():
            for key, v in state.items():
                out[f"optim/{i}/{key}"] = cast(v, mdt) if key in ("exp_avg", "exp_avg_sq") else v.detach()
        if self.best_state is not None:
            out.update({f"best/{k}": v for k, v in self.best_state.items()})
        out["rng/train"] = self.gen.get_state()
        out["rng/cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            out["rng/cuda"] = torch.cuda.get_rng_state(self.device)
        return out

    def _checkpoint_state(self, session_seconds: float) -> dict[str, Any]:
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.opt.state_dict()["param_groups"]]
        return {
            "model": self.name,
            "task": {"kind": self.task.kind, "config": config_dict(self.task.config)},
            "options": self.opts.to_dict(),
            "data": self.data_info,
            "step": self.step,
            "total": self.total,
            "planned_by": self.planned_by,
            "sampler": self.sampler.state(),
            "loss_acc": float(self.loss_acc),
            "loss_count": self.loss_count,
            "history": self.history,
            "best": self.best,
            "seconds": round(self.seconds_before + session_seconds, 3),
            "sessions": [*self.sessions, self._session_row(session_seconds)],
            "param_groups": groups,
            "device_type": self.device.type,
            "dtypes": {"weights": self.opts.checkpoint_weights, "moments": self.opts.checkpoint_moments},
            "torch": torch.__version__,
        }

    def _session_row(self, seconds: float) -> dict[str, Any]:
        return {"start_step": self._start_step, "end_step": self.step, "seconds": round(seconds, 3),
                "device": device_name(self.device), "torch": torch.__version__, "started": self._started_at,
                "command": self.command}

    def _save(self, session_seconds: float) -> ckpt.WrittenCheckpoint:
        t = time.perf_counter()
        written = ckpt.write_checkpoint(
            self.checkpoint_dir, self._checkpoint_tensors(), self._checkpoint_state(session_seconds),
            shard_bytes=int(self.opts.shard_mb * 1e6),
        )
        self._save_seconds = time.perf_counter() - t
        self._write(
            f"checkpoint step {self.step}: {len(written.files)} files, {written.total_bytes / 1e6:.1f} MB in all "
            f"(largest {max(written.shard_sizes) / 1e6:.1f} MB; weights {self.opts.checkpoint_weights}, "
            f"moments {self.opts.checkpoint_moments}) -> {self.checkpoint_dir} in {self._save_seconds:.1f} s"
        )
        return written

    def _load(self) -> None:
        tensors, state = ckpt.read_checkpoint(self.checkpoint_dir)
        if state["model"] != self.name:
            raise ValueError(f"{self.checkpoint_dir} holds a checkpoint of {state['model']!r}, not {self.name!r}")
        if state["device_type"] != self.device.type and not self.export_only:
            raise ValueError(
                f"the checkpoint was written on {state['device_type']} and its random states only continue there; "
                f"resume it with --device {state['device_type']}"
            )
        self._check_same("option", state["options"], self.opts.to_dict(), TrainOptions.SESSION)
        self._check_same("model option", state["task"]["config"], config_dict(self.task.config), self.task.SESSION)
        with torch.no_grad():
            self.net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
            if self.ema is not None:
                self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema/")})
        opt_state: dict[int, dict[str, Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim/"):
                _, i, key = k.split("/", 2)
                opt_state.setdefault(int(i), {})[key] = v
        current = self.opt.state_dict()["param_groups"]
        groups = []
        for saved, now in zip(state["param_groups"], current, strict=True):
            keep = {k: now[k] for k in ("params", "fused", "foreach", "capturable", "differentiable") if k in now}
            groups.append({**saved, **keep, "betas": tuple(saved["betas"])})
        self.opt.load_state_dict({"state": opt_state, "param_groups": groups})
        for group in self.opt.param_groups:  # the parameter's dtype (bfloat16 moments) and memory format
            for p in group["params"]:  # (channels_last): fused AdamW needs both to match its parameter
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in self.opt.state.get(p, {}):
                        self.opt.state[p][key] = torch.empty_like(p).copy_(self.opt.state[p][key])
        self.best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")} or None
        if not self.export_only:
            self.gen.set_state(tensors["rng/train"])
            torch.set_rng_state(tensors["rng/cpu"])
            if self.device.type == "cuda" and "rng/cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng/cuda"], self.device)
        self.sampler.load_state(state["sampler"])
        self.step, self.total, self.planned_by = int(state["step"]), state["total"], state["planned_by"]
        self.loss_acc = torch.tensor(state["loss_acc"], dtype=torch.float32, device=self.device)
        self.loss_count = int(state["loss_count"])
        self.history, self.best = state["history"], state["best"]
        self.sessions = state["sessions"]
        self.seconds_before = float(state["seconds"])
        self._write(f"resumed {self.name} at step {self.step} of {self.total or '?'} from {self.checkpoint_dir}")

    @staticmethod
    def _check_same(what: str, saved: dict[str, Any], given: dict[str, Any], session: frozenset[str]) -> None:
        diff = [f"--{k.replace('_', '-')} {given.get(k)!r} (checkpoint: {saved.get(k)!r})"
                for k in sorted(set(saved) | set(given))
                if k not in session and _norm(saved.get(k)) != _norm(given.get(k))]
        if diff:
            raise ValueError(
                f"a resumed run keeps its {what}s; these differ from the checkpoint's: {', '.join(diff)}. "
                "Drop them, or start a new run in another --checkpoint folder"
            )

    # ---- export ------------------------------------------------------------------------------

    def export_net(self) -> nn.Module:
        """The shipped network on the CPU in float32: the best EMA (``keep_best``), else the EMA, else the weights."""
        src = self.ema if self.ema is not None else self.net
        net = copy.deepcopy(src).to("cpu", torch.float32).eval()
        if self.best_state is not None:
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in self.best_state.items()})
        return net

    def summary(self, session_seconds: float | None = None) -> dict[str, Any]:
        """The run so far, for ``train_log.json`` and model cards (``session_seconds``: this session's
        time so far; ``None`` outside a session, when exporting a checkpoint)."""
        sessions = self.sessions if session_seconds is None else [*self.sessions, self._session_row(session_seconds)]
        train = self.history["train"]
        valid = self.history["valid"]
        per_epoch = max(int(self.data_info.get("examples_per_epoch") or self.sampler.n), 1)
        shipped_step = self.best["step"] if self.best_state is not None and self.best else self.step
        shipped = next((r for r in reversed(valid) if r["step"] == shipped_step), None)
        return {
            "model": self.name,
            "steps": self.step,
            "planned_steps": self.total,
            "planned_by": self.planned_by,
            "finished": self.total is not None and self.step >= self.total,
            "seconds": round(self.seconds_before + (session_seconds or 0.0), 1),
            "sessions": sessions,
            "examples_seen": self.step * self.opts.batch_size,
            "epochs": round(self.step * self.opts.batch_size / per_epoch, 2),
            "final_loss": train[-1][1] if train else None,
            "final_valid_loss": valid[-1]["loss"] if valid else None,
            "final_valid": valid[-1] if valid else None,
            "shipped_valid": shipped,
            "best_valid": self.best,
            "parameters": self.n_params,
            "device": sessions[-1]["device"] if sessions else device_name(self.device),
            "torch": sessions[-1]["torch"] if sessions else torch.__version__,
            "shipped_weights": "best EMA" if self.best_state is not None else ("EMA" if self.ema is not None else "raw"),
        }

    def export(self, session_seconds: float | None = None) -> list[Path]:
        """Write the shipped model folder (``task.export``), ``train_log.json`` and ``loss.png``."""
        assert self.out is not None
        summary = self.summary(session_seconds)
        merged = {**self.opts.to_dict(), **config_dict(self.task.config)}
        info = {"data": self.data_info, "summary": summary, "options": merged, "command": self.command}
        files = self.task.export(self.export_net(), self.out, info)
        log = {"command": self.command, "config": merged, **summary, "history": self.history,
               "loss_history": [[s, v] for s, v, _ in self.history["train"]], "trained_alongside": []}
        atomic_write_bytes(self.out / "train_log.json", (json.dumps(log, indent=1) + "\n").encode())
        files.append(self.out / "train_log.json")
        title = f"{self.name}: {self.step} steps, batch {self.opts.batch_size}"
        png = plot_history(self.history, self.out / "loss.png", title, getattr(self.task, "loss_name", "loss"))
        if png is not None:
            files.append(png)
        return files

    def export_checkpoint(self) -> list[Path]:
        """Export the checkpoint in ``checkpoint_dir`` to ``out`` without its data or training (on this device)."""
        if self.out is None:
            raise ValueError("--export-only needs --out FOLDER")
        self._build(data_info=ckpt.read_state(self.checkpoint_dir)["data"])
        return self.export(None)

    # ---- the session -------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def _warn(self, text: str) -> None:
        self._write(f"warning: {text}")

    def run(self, export: bool = True) -> SessionResult:
        """Train until the last step, ``--stop-at`` or the time budget; checkpoint; export (when ``out``)."""
        threads = torch.get_num_threads()
        if self.opts.threads:
            torch.set_num_threads(self.opts.threads)
        try:
            return self._run(export)
        finally:
            torch.set_num_threads(threads)

    def _run(self, export: bool) -> SessionResult:
        from tqdm.auto import tqdm

        opts = self.opts
        start = time.perf_counter()
        self._started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self._bar = None
        self._build()
        self._start_step = self.step
        self._write(f"{self.name}: {self.n_params:,} parameters, {self.task.num_examples:,} training examples, "
                    f"batch {opts.batch_size}, device {device_name(self.device)}, step {self.step} of {self.total or '? (timed)'}")
        budget = math.inf if opts.minutes is None else opts.minutes * 60.0
        self._save_seconds = min(_RESERVE_S, 0.05 * budget)  # until the first save is timed
        if self.step == 0 and not self.history["valid"]:
            self._validate()
        last_ckpt = time.perf_counter()
        self._bar = tqdm(total=self.total, initial=self.step, desc=self.name, unit="step", disable=not opts.progress,
                         mininterval=2.0, dynamic_ncols=True)
        timer_step, timer_start = None, 0.0
        reason = "done"
        while True:
            if self.total is not None and self.step >= self.total:
                reason = "done"
                break
            if opts.stop_at is not None and self.step >= opts.stop_at:
                reason = "stop-at"
                break
            elapsed = time.perf_counter() - start
            if elapsed + self._reserve(budget) >= budget:
                reason = "budget"
                break
            self._train_step()
            self._bar.update(1)
            if self.total is None and timer_step is None and self.step - self._start_step >= 5:
                self._sync()
                timer_step, timer_start = self.step, time.perf_counter()
            elif self.total is None and timer_step is not None and self.step - timer_step >= opts.calibrate_steps:
                self._sync()
                per_step = (time.perf_counter() - timer_start) / (self.step - timer_step)
                left = budget - (time.perf_counter() - start) - self._reserve(budget)
                if opts.total_minutes is not None:  # the whole run, over sessions
                    left = opts.total_minutes * 60.0 - self.seconds_before - (time.perf_counter() - start)
                self.total = self.step + max(1, int(0.97 * left / per_step))
                self._bar.total = self.total
                self._write(f"{per_step * 1e3:.1f} ms per step: the run is fixed at {self.total} steps "
                            f"(repeat it with --steps {self.total})")
            if self.step % opts.log_every == 0:
                mean = self._flush_loss()
                self._bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
            if self.step % opts.val_every == 0 or self.step == self.total:
                row = self._validate()
                self._write(f"step {self.step}: validation loss {row['loss']:.5f}"
                            + (f" (raw weights {row['loss_raw']:.5f})" if "loss_raw" in row else ""))
            if time.perf_counter() - last_ckpt >= opts.checkpoint_minutes * 60.0:
                self._save(time.perf_counter() - start)
                last_ckpt = time.perf_counter()
        if reason == "done" and self.loss_count:
            self._flush_loss()
        self._sync()
        self._bar.close()
        self._bar = None
        if self.total is None and reason == "budget":  # the budget ran out before the speed was measured
            self.total = self.step
        seconds = time.perf_counter() - start
        written = self._save(seconds)
        result = SessionResult(step=self.step, total=self.total, reason=reason, seconds=seconds, checkpoint=written)
        if export and self.out is not None:
            result.exported = self.export(seconds)
            self._write(f"exported {self.name} (step {self.step}) to {self.out}")
        return result

    def _reserve(self, budget: float) -> float:
        """Seconds kept at the end of a budget for the last checkpoint, validation and export."""
        return 2.0 * self._save_seconds + min(5.0, 0.05 * budget)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _norm(v: Any) -> Any:
    """Compare JSON-loaded and in-memory option values (tuples come back as lists)."""
    if isinstance(v, tuple):
        return [_norm(x) for x in v]
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v
