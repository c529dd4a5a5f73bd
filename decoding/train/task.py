"""What a trainer needs from a model: the :class:`Task` object, and the options every run shares.

The training skeleton (:mod:`decoding.train.loop`) owns the optimizer, schedules, EMA, mixed
precision, time budget, validation cadence, checkpoints and plots. A task owns only what is
specific to its model: building the network, the data, the loss of a batch, the validation loss
on held-out data, and writing the shipped model folder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass
class TrainOptions:
    """Options of the training skeleton, shared by every model (CLI flags of ``decoding train``).

    Attributes:
        steps: total optimizer steps of the run; fixes the learning-rate schedule. ``None``: chosen
            from the speed of the first steps so that the run fits ``total_minutes`` (or this
            session's ``minutes``), then recorded in the checkpoint.
        minutes: wall-clock budget of this process (this session); a checkpoint is written at the end.
        total_minutes: training time of the whole run over all its sessions, used only to choose
            ``steps`` when it is not given.
        stop_at: end this session after this global step (a checkpoint is written).
        batch_size, lr, warmup, min_lr_ratio, weight_decay, beta1, beta2, grad_clip: AdamW and its schedule
            (weight decay on weights of dimension >= 2 only).
        ema_decay / ema_std: classical EMA decay, or EDM2's power EMA relative width (give one, or neither
            for no EMA; the shipped weights are the EMA's when there is one).
        seed: weights, data order and noise.
        device: ``cpu``, ``cuda``, ``cuda:1``... (bf16 autocast and fused AdamW on CUDA).
        compile: ``torch.compile`` the training forward (falls back to eager if compiling fails).
        compile_mode: ``torch.compile`` mode: ``default``, ``reduce-overhead`` (CUDA graphs: for small,
            launch-bound models) or ``max-autotune-no-cudagraphs``.
        log_every: steps between reads of the training loss (the only host syncs of a step).
        val_every: steps between validation losses (and at the last step).
        checkpoint_minutes: minutes between resume checkpoints.
        checkpoint_weights / checkpoint_moments: dtype of the weights + EMA / of Adam's moments in the
            resume checkpoint (``float32``: exact resume; ``bfloat16``: half the size, not bit-exact).
        shard_mb: largest checkpoint file in MB (10^6 bytes).
        keep_best: also keep (in the checkpoint, in ``save_dtype``) the EMA weights of the best
            validation loss, and ship those.
        save_dtype: dtype of the shipped weights (``bfloat16`` or ``float16``).
        calibrate_steps: steps timed to choose ``steps`` from ``minutes``.
        progress: tqdm progress bar.
        threads: CPU threads (``torch.set_num_threads``) for this run.
    """

    steps: int | None = None
    minutes: float | None = None
    total_minutes: float | None = None
    stop_at: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    ema_decay: float | None = None
    ema_std: float | None = None
    seed: int = 0
    device: str = "cpu"
    compile: bool = False
    compile_mode: str = "default"
    log_every: int = 25
    val_every: int = 500
    checkpoint_minutes: float = 5.0
    checkpoint_weights: str = "float32"
    checkpoint_moments: str = "float32"
    shard_mb: float = 15.0
    keep_best: bool = False
    save_dtype: str = "bfloat16"
    calibrate_steps: int = 30
    progress: bool = True
    threads: int | None = None

    #: Options that may differ between the sessions of one run (they do not change the weights).
    SESSION: ClassVar[frozenset[str]] = frozenset({
        "minutes", "stop_at", "device", "compile", "compile_mode", "log_every", "checkpoint_minutes", "checkpoint_weights",
        "checkpoint_moments", "shard_mb", "calibrate_steps", "progress", "threads",
    })

    def check(self) -> None:
        """Raise ValueError naming the first bad option."""
        if self.steps is None and self.minutes is None and self.total_minutes is None:
            raise ValueError("give --steps (the run's length) or --minutes / --total-minutes (a time budget)")
        require_each(self, ("compile_mode",), lambda v: v in ("default", "reduce-overhead", "max-autotune-no-cudagraphs"),
                     "be default, reduce-overhead or max-autotune-no-cudagraphs")
        require_each(self, ("steps", "minutes", "total_minutes", "stop_at", "batch_size", "lr", "log_every", "val_every", "checkpoint_minutes",
                            "shard_mb", "calibrate_steps"), lambda v: v is None or v > 0, "be > 0")
        require_each(self, ("warmup", "weight_decay", "grad_clip"), lambda v: v >= 0, "be >= 0")
        require_each(self, ("min_lr_ratio",), lambda v: 0.0 <= v <= 1.0, "lie in [0, 1]")
        require_each(self, ("beta1", "beta2", "ema_decay"), lambda v: v is None or 0.0 <= v < 1.0, "lie in [0, 1)")
        require_each(self, ("checkpoint_weights", "checkpoint_moments"), lambda v: v in ("float32", "bfloat16"),
                     "be float32 or bfloat16")
        require_each(self, ("save_dtype",), lambda v: v in ("bfloat16", "float16", "float32"),
                     "be bfloat16, float16 or float32")
        require_each(self, ("shard_mb",), lambda v: v * 1e6 <= 16 * 2**20, "stay under the 16 MiB per-file transfer limit")
        if self.ema_decay is not None and self.ema_std is not None:
            raise ValueError("give --ema-decay or --ema-std, not both")
        if self.keep_best and self.ema_decay is None and self.ema_std is None:
            raise ValueError("--keep-best keeps the best EMA weights: give --ema-decay or --ema-std")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_each(cfg: Any, names: tuple[str, ...], ok: Callable[[Any], bool], rule: str) -> None:
    """Raise ``ValueError("--name must <rule>, got <value>")`` for the first field of ``cfg`` in ``names`` not ``ok``."""
    for name in names:
        value = getattr(cfg, name)
        if not ok(value):
            raise ValueError(f"--{name.replace('_', '-')} must {rule}, got {value!r}")


def config_dict(cfg: Any) -> dict[str, Any]:
    """A task config dataclass as a JSON-ready dict."""
    return asdict(cfg)


def batched_mean(
    loss_of: Callable[[Tensor, Tensor, torch.Generator], Tensor], x: Tensor, y: Tensor, batch: int, seed: int,
    device: torch.device,
) -> float:
    """Example-weighted mean of ``loss_of(x[i:i+batch], y[i:i+batch], g)`` over ``x`` ``(N, ...)`` and
    ``y`` ``(N,)``, with one generator ``g`` on ``device`` seeded ``seed`` (the same draws every call):
    the validation loss of the image tasks."""
    g = torch.Generator(device=device).manual_seed(seed)
    total = torch.zeros((), device=device)
    n = int(x.shape[0])
    for i in range(0, n, batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        total += loss_of(xb, yb, g) * xb.shape[0]
    return float(total) / n


class Task(ABC):
    """The model-specific part of a training run.

    Subclasses set :attr:`config` (a dataclass of the model's own options) in ``__init__`` and
    implement the abstract methods. The skeleton calls, in order: :meth:`setup` (data onto the
    device), :meth:`build` (seeded), then per step :meth:`loss` on a batch of example indices,
    every ``val_every`` steps :meth:`validate`, and at the end :meth:`export`.
    """

    #: Name of the model kind, for logs (e.g. ``"image"``).
    kind: ClassVar[str] = "task"
    #: Config fields that may change between sessions (data locations, kernels), not the weights.
    SESSION: ClassVar[frozenset[str]] = frozenset()
    #: Defaults of :class:`TrainOptions` for this kind of model.
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    config: Any

    @abstractmethod
    def setup(self, device: torch.device) -> dict[str, Any]:
        """Load the training and validation data onto ``device``; return a JSON description of it
        (sizes, source, tokenizer...) that is stored in the checkpoint and passed to :meth:`export`."""

    def bind(self, data_info: dict[str, Any]) -> None:  # noqa: B027 (optional hook; most tasks need nothing)
        """Restore from :meth:`setup`'s description what :meth:`build` and :meth:`export` need, without
        the data (to export a checkpoint elsewhere). Default: nothing is needed."""
        return None

    @property
    @abstractmethod
    def num_examples(self) -> int:
        """How many training examples the sampler draws indices from (after :meth:`setup`)."""

    @abstractmethod
    def build(self) -> nn.Module:
        """A freshly initialised network (CPU, float32; the caller has seeded torch)."""

    def prepare(self, net: nn.Module, device: torch.device) -> nn.Module:
        """Move a built network to ``device`` (memory format, kernels); default ``net.to(device)``."""
        return net.to(device)

    @abstractmethod
    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        """The scalar training loss of the examples ``indices`` ``(B,)``; all randomness from ``generator``."""

    @abstractmethod
    def validate(self, net: nn.Module) -> dict[str, float]:
        """Validation metrics on held-out data, the same draws every call; must hold ``"loss"``.

        Runs in ``torch.no_grad`` with ``net`` in eval mode (autocast set by the caller); must not
        touch the global random state.
        """

    @abstractmethod
    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        """Write the shipped model folder ``out`` from ``net`` (the EMA weights, on the CPU, float32).

        ``info`` holds ``data`` (from :meth:`setup`), ``summary`` (steps, seconds, device...) and
        ``options``; the skeleton writes ``train_log.json`` and ``loss.png`` itself. Returns the files written.
        """

    def examples_per_epoch(self) -> int:
        """Examples in one pass over the training data (for the ``epochs`` figure of the logs)."""
        return self.num_examples
