"""Shared set-up of the solver benchmarks on the trained Fashion-MNIST UNets (and their exact twin).

- :func:`load_model`: ``"fashion-large"`` / ``"fashion-small"`` (our trained class-conditional
  UNets, :func:`decoding.models.image.load_unet`) evaluated in float32, float64 or bfloat16, with
  the labels ``i mod 10``; or ``"empirical"``: the exact posterior mean of 2,000 Fashion-MNIST
  training images under the *same* noise schedule (a closed-form model with no network error).
- :func:`reference`: the probability-flow ODE solved by RK4 (:func:`decoding.solvers.reference.reference_solve`)
  from the same noises, cached on disk (it costs ``4 * ref_steps`` model calls per sample).
- :func:`solve` and :func:`trajectory_error`: run a solver through the decode loop and score it as
  the eval suite does (mean over samples of the per-sample RMSE of the clamped final images against
  the reference, pixels in [-1, 1]).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from decoding import decode
from decoding.core.types import Prediction, State
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.parameterization import to_prediction
from decoding.solvers.reference import reference_solve
from decoding.solvers.schedules import VPSchedule

SHAPE = (1, 28, 28)
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


class TrainedUNet:
    """A trained UNet as ``state -> Prediction`` in a chosen dtype, with fixed class labels.

    The network computes in ``dtype`` (its noise-level sinusoids stay float32, as in the model);
    the prediction is returned in the sample's dtype. ``labels[:B]`` is the class of each row.
    """

    def __init__(self, name: str, labels: Tensor, dtype: torch.dtype = torch.float32, device: str = "cpu") -> None:
        from decoding.models.image import load_unet, schedule_from_config

        net, config = load_unet(name)
        self.device = torch.device(device)
        self.net = net.to(self.device, dtype).eval()
        self.dtype = dtype
        self.schedule: VPSchedule = schedule_from_config(config["schedule"])
        self.prediction = config["prediction"]
        self.labels = labels
        self.calls = 0
        self.fingerprint = weights_fingerprint(name)

    @torch.inference_mode()
    def __call__(self, state: State) -> Prediction:
        x = state.x
        t = state.t.to(torch.float64).cpu()
        lam = self.schedule.lambda_(t)
        alpha, sigma = self.schedule.alpha(t).to(x.dtype), self.schedule.sigma(t).to(x.dtype)
        dev = self.device
        out = self.net(x.to(dev, self.dtype), lam.to(dev, torch.float32), self.labels[: x.shape[0]].to(dev)).to(x.device)
        self.calls += x.shape[0]
        return to_prediction(out.to(x.dtype), self.prediction, x, alpha, sigma)


def weights_fingerprint(name: str) -> str:
    """First 16 hex digits of the SHA-256 of ``name``'s ``model.safetensors`` (cached references follow the weights)."""
    from decoding.models.image import resolve_checkpoint

    return hashlib.sha256((resolve_checkpoint(name) / "model.safetensors").read_bytes()).hexdigest()[:16]


def load_model(name: str, n: int, dtype: str = "float32", n_data: int = 2000, device: str = "cpu") -> tuple[object, VPSchedule]:
    """``(model, schedule)`` for ``name`` (see the module docstring); labels ``i mod 10`` for ``n`` rows.

    ``device``: where a trained network runs (the trajectories stay on the CPU in float64).
    """
    from decoding.models.image import read_config, schedule_from_config

    labels = torch.arange(max(n, 1)) % 10
    if name == "empirical":
        from decoding.denoisers import ClosedFormModel, fashion_mnist_data

        schedule = schedule_from_config(read_config("fashion-large")["schedule"])
        return ClosedFormModel(fashion_mnist_data(n_data, seed=0), schedule), schedule
    model = TrainedUNet(name, labels, DTYPES[dtype], device)
    return model, model.schedule


def noises(n: int, seed: int) -> Tensor:
    """``(n, 1, 28, 28)`` float64 standard normal starting points."""
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _cache_file(kind: str, parts: tuple) -> Path:
    from decoding.cache import cache_dir

    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
    return cache_dir("solvers", "trained") / f"{kind}-{digest}.safetensors"


def reference(
    model: object, schedule: VPSchedule, x: Tensor, steps: int, key: tuple, times: Tensor | None = None
) -> list[Tensor]:
    """RK4 states at ``times`` (default ``[t_max, t_end]``) from ``x``; cached under ``key``.

    The cache key also holds the model's ``fingerprint`` (the weights' hash of a :class:`TrainedUNet`),
    so a retrained model never reads the reference of its earlier weights.
    """
    ts = torch.tensor([schedule.t_max, schedule.t_end], dtype=torch.float64) if times is None else times
    fp = getattr(model, "fingerprint", None)
    path = _cache_file("ref", ((key, fp) if fp else key, steps, tuple(ts.tolist()), x.shape, float(x.sum())))
    if path.is_file():
        data = load_file(str(path))
        return [data[str(k)] for k in range(len(data))]
    states = reference_solve(model, schedule, x, ts, steps=steps)
    save_file({str(k): s.contiguous() for k, s in enumerate(states)}, str(path))
    return states


def solve(
    model: object,
    schedule: VPSchedule,
    solver: object,
    x: Tensor,
    steps: int,
    spacing: str = "logsnr",
    timesteps: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    callback=None,
) -> Tensor:
    """Final samples of ``solver`` from ``x`` (run in ``dtype``), float64 ``(B, 1, 28, 28)``."""
    process = ContinuousProcess(schedule, solver, spacing=spacing, timesteps=timesteps)
    return decode(model, process, x.to(dtype), steps=steps, callback=callback).x.to(torch.float64)


def per_sample_error(out: Tensor, ref: Tensor) -> Tensor:
    """``(B,)`` RMSE per sample of the clamped images (the eval suite's ``trajectory_error``)."""
    return (out.clamp(-1, 1) - ref.clamp(-1, 1)).pow(2).flatten(1).mean(1).sqrt()


def trajectory_error(out: Tensor, ref: Tensor) -> float:
    """Mean of :func:`per_sample_error`."""
    return float(per_sample_error(out, ref).mean())


def paired_difference(errors: Tensor, base: Tensor) -> list[float]:
    """``[mean, standard error]`` of ``errors - base`` ``(B,)``: two solvers' per-sample errors from the same noises."""
    d = errors - base
    return [float(d.mean()), float(d.std() / math.sqrt(d.numel())) if d.numel() > 1 else float("nan")]


def standard_error(out: Tensor, ref: Tensor) -> float:
    """Standard error of :func:`trajectory_error` over the samples."""
    e = per_sample_error(out, ref)
    return float(e.std() / math.sqrt(e.numel()))
