"""The diffusion classifier (Li et al., "Your Diffusion Model is Secretly a Zero-Shot Classifier",
arXiv 2303.16203): classify an image by which class label lets the class-conditional diffusion
model denoise it best.

For an image ``x0`` and ``n`` noise draws ``(t_i, eps_i)`` shared by every class,

    err_c = 1/n sum_i || eps_i - eps_theta(alpha_i x0 + sigma_i eps_i, t_i, c) ||^2 / D
    predicted class = argmin_c err_c

(``D`` pixels). Sharing the draws between classes is what makes the comparison precise (the
paper's section 3.2). The times follow a shifted golden-ratio sequence
``t_i = t_min + (t_max - t_min) frac(u + i / phi)`` (one uniform ``u`` per image), so that every
prefix ``i < n`` spreads over the time range: the accuracy for each ``n`` is read from the first
``n`` draws of one run. ``t_min``/``t_max`` are fractions of the model schedule's time range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.solvers.schedules import VPSchedule

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class ClassConditionalModel(Protocol):
    """``model(state) -> Prediction(eps=... or x0=...)`` with labels in ``state.memory["cond"]``.

    ``schedule`` is its VP schedule (``x_t = alpha_t x0 + sigma_t eps``); ``num_classes`` the
    number of labels. :class:`decoding.models.image.ImageDiffusionModel` is one.
    """

    num_classes: int
    schedule: VPSchedule

    def __call__(self, state: State) -> Prediction: ...


def noise_times(u: Tensor, n: int, t_min: float, t_max: float) -> Tensor:
    """``(B, n)`` times ``t_min + (t_max - t_min) frac(u + i * 0.618...)`` for uniforms ``u`` ``(B,)``."""
    i = torch.arange(n, dtype=torch.float64, device=u.device)
    return t_min + (t_max - t_min) * torch.frac(u.double()[:, None] + i[None, :] * GOLDEN)


@torch.inference_mode()
def denoising_errors(
    model: ClassConditionalModel,
    images: Tensor,
    n_samples: int,
    generator: torch.Generator,
    *,
    classes: Sequence[int] | None = None,
    t_range: tuple[float, float] = (0.0, 1.0),
    max_rows: int = 2048,
) -> Tensor:
    """Per-draw, per-class denoising errors of each image.

    Args:
        model: a class-conditional eps (or v / x0) model, see :class:`ClassConditionalModel`.
        images: ``(B, C, H, W)`` float in the model's data range ([-1, 1] for ours).
        n_samples: number of noise draws ``n`` per image.
        generator: random source on ``images.device``.
        classes: the candidate labels (default ``range(model.num_classes)``).
        t_range: ``(lo, hi)`` in [0, 1]: the draw times span this part of the schedule's range
            ``[schedule.t_min, schedule.t_max]``.
        max_rows: largest batch handed to the model (``classes x draws`` rows of one image are
            split into calls of at most this many).

    Returns:
        ``(B, n, K)`` float64 mean squared eps errors.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    lo, hi = t_range
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(
            f"t_range must satisfy 0 <= t_min < t_max <= 1 (fractions of the schedule), got {t_range}"
        )
    sched = model.schedule
    t_min = sched.t_min + lo * (sched.t_max - sched.t_min)
    t_max = sched.t_min + hi * (sched.t_max - sched.t_min)
    cls = list(range(model.num_classes)) if classes is None else list(classes)
    if not cls:
        raise ValueError("need at least one candidate class")
    b, k = images.shape[0], len(cls)
    dev = images.device
    u = torch.rand(b, generator=generator, device=dev)
    ts = noise_times(u, n_samples, t_min, t_max)  # (B, n)
    eps = torch.randn((b, n_samples, *images.shape[1:]), generator=generator, device=dev)
    labels = torch.tensor(cls, device=dev)
    out = torch.empty(b, n_samples, k, dtype=torch.float64)
    per_call = max(1, max_rows // k)  # draws per model call
    for j in range(b):
        for s in range(0, n_samples, per_call):
            e = eps[j, s : s + per_call]  # (m, C, H, W)
            m = e.shape[0]
            t = ts[j, s : s + m].cpu()
            alpha = sched.alpha(t).to(dev, torch.float32).view(m, 1, 1, 1)
            sigma = sched.sigma(t).to(dev, torch.float32).view(m, 1, 1, 1)
            xt = alpha * images[j][None].float() + sigma * e  # (m, C, H, W)
            rows = xt[:, None].expand(m, k, *xt.shape[1:]).reshape(m * k, *xt.shape[1:])
            state = State(
                x=rows,
                t=t[:, None].expand(m, k).reshape(-1).to(dev),
                done=torch.zeros(m * k, dtype=torch.bool, device=dev),
                memory={"cond": labels.repeat(m), "schedule": sched},
            )
            pred = model(state)
            eps_hat = _eps_of(pred, rows, alpha.repeat_interleave(k, 0), sigma.repeat_interleave(k, 0))
            err = (eps_hat.float() - e.repeat_interleave(k, 0)).pow(2).flatten(1).mean(1)
            out[j, s : s + m] = err.view(m, k).double().cpu()
    return out


def _eps_of(pred: Prediction, xt: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    if pred.eps is not None:
        return pred.eps
    if pred.x0 is not None:
        return (xt - alpha * pred.x0) / sigma
    raise ValueError("the diffusion classifier needs a model that predicts eps or x0")


def predictions_by_n(
    errors: Tensor, ns: Sequence[int], classes: Sequence[int] | None = None
) -> dict[int, list[int]]:
    """Predicted labels using the first ``n`` draws, for each ``n`` in ``ns``.

    Args:
        errors: ``(B, n_max, K)`` from :func:`denoising_errors`.
        classes: the labels of the ``K`` columns (default ``0..K-1``).

    Returns:
        ``{n: [label of image 0, ...]}``.
    """
    cls = list(range(errors.shape[-1])) if classes is None else list(classes)
    cum = errors.cumsum(1)
    out = {}
    for n in ns:
        if not 1 <= n <= errors.shape[1]:
            raise ValueError(f"n = {n} outside 1..{errors.shape[1]} (the number of draws)")
        out[int(n)] = [cls[i] for i in cum[:, n - 1].argmin(-1).tolist()]
    return out


def accuracy_curve(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy against ``n`` from stored records with ``output = {"label", "pred": {n: label}}``."""
    ns = sorted({int(n) for r in records for n in r["output"]["pred"]})
    acc = [
        sum(r["output"]["pred"][str(n)] == r["output"]["label"] for r in records) / len(records) for n in ns
    ]
    return {"x": ns, "y": acc, "xlabel": "noise samples per image", "ylabel": "accuracy", "logx": True}
