"""Train the class-conditional Fashion-MNIST diffusion UNets (large and small) on one GPU.

Objective: v-prediction (Salimans & Ho, arXiv:2202.00512) or eps-prediction (Ho et al.,
arXiv:2006.11239) MSE on a variance-preserving process with the cosine schedule of Nichol &
Dhariwal (arXiv:2102.09672) in diffusers' discrete form ("squaredcos_cap_v2", 1000 steps, sampled
at continuous times), labels dropped to the null class with probability
``label_dropout`` for classifier-free guidance (arXiv:2207.12598), EMA weights, AdamW, bf16
autocast on CUDA, channels_last, the whole dataset on the device, fixed seeds.

The run is time-budgeted: with ``--minutes M`` and no ``--steps``, it times the first steps and
fixes the number of steps (and so the learning-rate schedule) to fit the budget; the chosen
number is logged so the run can be repeated with ``--steps``. Several sizes train in one process
on the same device (one step of each per iteration), each with its own seeded generator, so a
model trains the same alone or next to another.

    python -m decoding.train.image --size large small --minutes 7 --device cuda --out 'models/fashion-{size}'

Writes into each output folder: ``config.json``, ``model.safetensors`` (EMA weights, <= 16 MB),
``loss.png`` (loss curve) and ``train_log.json``. ``--profile`` instead times a few iterations
under ``torch.profiler`` and prints where the time goes (nothing is saved); ``--replot FOLDER``
redraws a finished run's loss curve.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from decoding.data.fashion_mnist import CLASSES, load_fashion_mnist
from decoding.models.image import SIZES, TRAIN_SCHEDULE, atomic_write_bytes, save_unet, schedule_from_config
from decoding.nn.unet import UNet
from decoding.solvers.schedules import DiscreteVPSchedule

# ---- noise levels of the training schedule -----------------------------------------------------


class NoiseLevels:
    """Draw training noise levels from a discrete VP schedule (``TRAIN_SCHEDULE``) in continuous time.

    ``t ~ U[0, N-1]`` and ``lambda(t)`` interpolated linearly between integer timesteps, exactly as
    :meth:`decoding.solvers.schedules.DiscreteVPSchedule.lambda_` does, but on the training device.
    Every noise level a sampler's grid can visit (fractional timesteps included) is trained on.
    """

    def __init__(self, schedule: DiscreteVPSchedule, device: torch.device) -> None:
        self.schedule = schedule
        self.table = schedule.lambdas.to(device, torch.float32)  # (N,) half log-SNR, decreasing
        self.n = int(self.table.numel())

    def sample(self, b: int, generator: torch.Generator) -> Tensor:
        """``(B,)`` half log-SNR ``lambda = log(alpha / sigma)`` of random times."""
        t = torch.rand(b, generator=generator, device=self.table.device) * (self.n - 1)
        lo = t.floor().long().clamp(max=self.n - 2)
        w = t - lo
        return torch.lerp(self.table[lo], self.table[lo + 1], w)


def cosine_log_snr(t: Tensor) -> Tensor:
    """Full log-SNR ``log(alpha^2 / sigma^2)`` of the training schedule at ``t`` in [0, 1] (``t * 999`` steps).

    Kept for callers written against the first version of this module (``decoding.evals.closed_form``);
    new code should take a :class:`~decoding.solvers.schedules.VPSchedule` and use its ``lambda_``.
    """
    schedule = schedule_from_config(TRAIN_SCHEDULE)
    steps = schedule.num_train_timesteps - 1  # type: ignore[attr-defined]
    return (2 * schedule.lambda_(t.double().cpu().clamp(0, 1) * steps)).to(t.device, torch.float32)


def alpha_sigma(lam: Tensor) -> tuple[Tensor, Tensor]:
    """``(alpha, sigma)`` of a VP process from ``lambda = log(alpha / sigma)``: ``alpha^2 = sigmoid(2 lambda)``."""
    return torch.sigmoid(2 * lam).sqrt(), torch.sigmoid(-2 * lam).sqrt()


# ---- training -------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (recorded in ``train_log.json`` and ``config.json``)."""

    sizes: list[str] = field(default_factory=lambda: ["large"])
    out: str = "models/fashion-{size}"
    steps: int | None = None
    minutes: float | None = 7.0
    batch_size: int = 512
    lr: float = 4e-4
    min_lr_ratio: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9995
    label_dropout: float = 0.1
    prediction: str = "v"
    seed: int = 0
    device: str = "cuda"
    compile: bool = False
    attention: str | None = None
    channels_last: bool = True
    log_every: int = 25
    calibrate_steps: int = 30
    data_root: str | None = None
    limit_data: int | None = None

    def check(self) -> None:
        unknown = [s for s in self.sizes if s not in SIZES]
        if unknown or not self.sizes:
            raise ValueError(f"unknown model size(s) {unknown}; choose from {sorted(SIZES)}")
        if len(self.sizes) > 1 and "{size}" not in self.out:
            raise ValueError("with several --size values, --out must contain '{size}' (e.g. 'models/fashion-{size}')")
        if self.steps is None and self.minutes is None:
            raise ValueError("give --steps or --minutes (or both)")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"--minutes must be > 0, got {self.minutes}")
        if self.prediction not in ("v", "eps"):
            raise ValueError(f"--prediction must be 'v' or 'eps', got {self.prediction!r}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"--label-dropout must be in [0, 1), got {self.label_dropout}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")


def diffusion_loss(
    net: torch.nn.Module,
    x0: Tensor,
    labels: Tensor,
    levels: NoiseLevels,
    generator: torch.Generator,
    prediction: str,
    label_dropout: float,
    null_class: int,
    autocast: bool,
    channels_last: bool = True,
) -> Tensor:
    """Mean squared error of the network's eps or v on noised images.

    Args:
        x0: ``(B, 1, 28, 28)`` clean images in [-1, 1].
        labels: ``(B,)`` long; each is replaced by ``null_class`` with probability ``label_dropout``.
        generator: the random source for times, noise and label dropout.
    """
    b, dev = x0.shape[0], x0.device
    drop = torch.rand(b, generator=generator, device=dev) < label_dropout
    labels = labels.masked_fill(drop, null_class)
    lam = levels.sample(b, generator)
    alpha, sigma = (a.view(b, 1, 1, 1) for a in alpha_sigma(lam))
    eps = torch.randn(x0.shape, generator=generator, device=dev)
    xt = alpha * x0 + sigma * eps
    if channels_last:
        xt = xt.contiguous(memory_format=torch.channels_last)
    target = eps if prediction == "eps" else alpha * eps - sigma * x0
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        out = net(xt, lam, labels)
    return F.mse_loss(out.float(), target)


class Trainee:
    """One model being trained: network, EMA copy, optimizer, generator and loss history."""

    def __init__(self, size: str, cfg: TrainConfig, device: torch.device) -> None:
        torch.manual_seed(cfg.seed)  # the initial weights
        self.size = size
        self.net = UNet(copy.deepcopy(SIZES[size])).to(device)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.net.set_attention_backend(cfg.attention)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        fused = device.type == "cuda"
        self.opt = torch.optim.AdamW(
            self.net.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay, fused=fused
        )
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.forward = torch.compile(self.net) if cfg.compile else self.net
        self.history: list[tuple[int, float]] = []
        self.pending: list[Tensor] = []
        self.params = [p for p in self.net.parameters()]
        self.ema_params = [p for p in self.ema.parameters()]

    def step(self, data: Tensor, labels: Tensor, levels: NoiseLevels, cfg: TrainConfig, lr: float, n: int) -> None:
        idx = torch.randint(data.shape[0], (cfg.batch_size,), generator=self.gen, device=data.device)
        loss = diffusion_loss(
            self.forward, data[idx], labels[idx], levels, self.gen, cfg.prediction, cfg.label_dropout,
            self.net.cfg.null_class, data.device.type == "cuda", cfg.channels_last,
        )
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        decay = min(cfg.ema_decay, (1 + n) / (10 + n))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema_params, self.params, 1 - decay)
        self.pending.append(loss.detach())

    def flush(self, step: int) -> float:
        """Record the mean loss of the steps since the last flush (one device sync)."""
        if not self.pending:
            return float("nan")
        mean = float(torch.stack(self.pending).mean())
        self.history.append((step, mean))
        self.pending.clear()
        return mean


def learning_rate(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio * lr`` at ``total``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def load_data(cfg: TrainConfig, device: torch.device) -> tuple[Tensor, Tensor]:
    """Training images ``(N, 1, 28, 28)`` float in [-1, 1] (channels_last) and labels ``(N,)``, on ``device``."""
    images, labels = load_fashion_mnist("train", cfg.data_root)
    if cfg.limit_data:
        images, labels = images[: cfg.limit_data], labels[: cfg.limit_data]
    x = images.to(device)[:, None].float().div(127.5).sub(1.0)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, labels.to(device)


def plot_losses(history: list[tuple[int, float]], path: Path, title: str) -> None:
    """Loss curve PNG (matplotlib, Agg backend), written atomically. Without matplotlib it prints how
    to draw it later (``python -m decoding.train.image --replot FOLDER``) and returns."""
    import io

    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: no {path}; draw it later with "
              f"`python -m decoding.train.image --replot {path.parent}`", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if history:
        steps, losses = zip(*history, strict=True)
        ax.plot(steps, losses, lw=1)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (MSE)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def train(cfg: TrainConfig, argv: list[str] | None = None) -> dict[str, Path]:
    """Run training; return ``{size: output folder}``."""
    cfg.check()
    device = torch.device(cfg.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda but CUDA is not available; use --device cpu for a tiny run")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    from tqdm.auto import tqdm

    data, labels = load_data(cfg, device)
    schedule = schedule_from_config(TRAIN_SCHEDULE)
    assert isinstance(schedule, DiscreteVPSchedule)
    levels = NoiseLevels(schedule, device)
    trainees = [Trainee(size, cfg, device) for size in cfg.sizes]
    budget = None if cfg.minutes is None else cfg.minutes * 60.0
    total = cfg.steps if cfg.steps is not None else 10**9
    planned_by = "steps" if cfg.steps is not None else "time"
    start = time.perf_counter()
    step_start = None
    bar = tqdm(total=cfg.steps, desc="train " + "+".join(cfg.sizes), unit="step")
    step = 0
    stopped_early = False
    while step < total:
        lr = learning_rate(step, total, cfg)
        for tr in trainees:
            tr.step(data, labels, levels, cfg, lr, step)
        step += 1
        bar.update(1)
        if step == 5:  # after compilation / cudnn autotuning
            if device.type == "cuda":
                torch.cuda.synchronize()
            step_start = time.perf_counter()
        if cfg.steps is None and step == 5 + cfg.calibrate_steps and budget is not None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            per_step = (time.perf_counter() - step_start) / cfg.calibrate_steps
            remaining = budget - (time.perf_counter() - start) - 20.0  # leave time to save
            total = step + max(1, int(0.97 * remaining / per_step))
            bar.total = total
            bar.refresh()
        if step % cfg.log_every == 0 or step == total:
            losses = [tr.flush(step) for tr in trainees]
            bar.set_postfix({tr.size: f"{loss:.4f}" for tr, loss in zip(trainees, losses, strict=True)})
            if budget is not None and time.perf_counter() - start > budget:
                stopped_early = step < total
                break
    bar.close()
    for tr in trainees:
        tr.flush(step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    outputs: dict[str, Path] = {}
    for tr in trainees:
        out = Path(cfg.out.format(size=tr.size))
        summary = {
            "steps": step,
            "planned_steps": total,
            "planned_by": planned_by,
            "stopped_early": stopped_early,
            "seconds": round(seconds, 1),
            "images_seen": step * cfg.batch_size,
            "epochs": round(step * cfg.batch_size / data.shape[0], 2),
            "final_loss": tr.history[-1][1] if tr.history else None,
            "trained_alongside": [s for s in cfg.sizes if s != tr.size],
        }
        meta = {
            "prediction": cfg.prediction,
            "schedule": dict(TRAIN_SCHEDULE),
            "classes": list(CLASSES),
            "image_range": [-1.0, 1.0],
            "data": "Fashion-MNIST train (60,000 images), Debian package dataset-fashion-mnist",
            "training": {**asdict(cfg), **summary},
        }
        save_unet(tr.ema, out, meta)
        plot_losses(tr.history, out / "loss.png", f"fashion-{tr.size}: {step} steps, batch {cfg.batch_size}")
        log = {
            "command": "python -m decoding.train.image " + " ".join(argv if argv is not None else sys.argv[1:]),
            "config": asdict(cfg),
            **summary,
            "parameters": sum(p.numel() for p in tr.net.parameters()),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "loss_history": [[s, round(v, 6)] for s, v in tr.history],
        }
        atomic_write_bytes(out / "train_log.json", (json.dumps(log, indent=1) + "\n").encode())
        outputs[tr.size] = out
    return outputs


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m decoding.train.image", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", nargs="+", default=d.sizes, help=f"one or more of {sorted(SIZES)}")
    p.add_argument("--out", default=d.out, help="output folder; '{size}' is replaced by the size")
    p.add_argument("--steps", type=int, default=None, help="number of steps (default: fit --minutes)")
    p.add_argument("--minutes", type=float, default=None, help="time budget in minutes (default 7 without --steps)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--label-dropout", type=float, default=d.label_dropout)
    p.add_argument("--prediction", choices=["v", "eps"], default=d.prediction)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--attention", default=None, choices=["xformers", "sdpa", "naive"],
                   help="attention backend (default: automatic, xformers on CUDA when installed)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory format")
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--limit-data", type=int, default=None, help="train on the first N images only (tests)")
    a = p.parse_args(argv)
    minutes = a.minutes if a.minutes is not None else (None if a.steps is not None else d.minutes)
    return TrainConfig(
        sizes=list(a.size), out=a.out, steps=a.steps, minutes=minutes, batch_size=a.batch_size, lr=a.lr,
        warmup=a.warmup, ema_decay=a.ema_decay, label_dropout=a.label_dropout, prediction=a.prediction,
        seed=a.seed, device=a.device, compile=a.compile, attention=a.attention,
        channels_last=not a.no_channels_last, log_every=a.log_every, data_root=a.data_root,
        limit_data=a.limit_data,
    )


def profile(cfg: TrainConfig, steps: int = 10, rows: int = 25) -> str:
    """Time ``steps`` training iterations under ``torch.profiler`` (after 5 warm-up steps); nothing is saved.

    Returns the profiler's table of the most expensive operators (device time on CUDA) and prints
    the mean wall time per iteration: a one-minute check of where a training step's time goes.
    """
    cfg.check()
    device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data, labels = load_data(cfg, device)
    schedule = schedule_from_config(TRAIN_SCHEDULE)
    assert isinstance(schedule, DiscreteVPSchedule)
    levels = NoiseLevels(schedule, device)
    trainees = [Trainee(size, cfg, device) for size in cfg.sizes]

    def run(n: int) -> None:
        for i in range(n):
            for tr in trainees:
                tr.step(data, labels, levels, cfg, cfg.lr, i)
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(5)
    start = time.perf_counter()
    run(steps)
    per_step = (time.perf_counter() - start) / steps
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        run(steps)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=rows)
    print(table)
    print(f"{'+'.join(cfg.sizes)}: {per_step * 1e3:.1f} ms per iteration (batch {cfg.batch_size}, "
          f"channels_last={cfg.channels_last}, attention={cfg.attention or 'auto'}, compile={cfg.compile})")
    return table


def replot(folder: str | Path) -> Path:
    """Redraw ``loss.png`` of a finished run from its ``train_log.json``."""
    folder = Path(folder)
    log = json.loads((folder / "train_log.json").read_text())
    history = [(int(s), float(v)) for s, v in log["loss_history"]]
    plot_losses(history, folder / "loss.png", f"{folder.name}: {log['steps']} steps, batch {log['config']['batch_size']}")
    return folder / "loss.png"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--replot"]:
        for folder in args[1:]:
            print(f"wrote {replot(folder)}")
        return 0
    if "--profile" in args:
        rest = [a for a in args if a != "--profile"]
        profile(parse_args(rest))
        return 0
    cfg = parse_args(argv)
    try:
        outs = train(cfg, argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for size, out in outs.items():
        print(f"{size}: wrote {out}/config.json, model.safetensors, loss.png, train_log.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
