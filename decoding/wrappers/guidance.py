"""Guidance of a class-conditional diffusion model as one model wrapper: CFG (+ rescale, interval), CFG++, PAG.

Every guidance method contrasts the conditional prediction with another prediction of the same
network at the same ``x_t``: the unconditional one (null label) or one whose self-attention maps
are the identity. :class:`GuidedModel` runs all the variants a combination needs in ONE batched
call (``k * B`` rows) and combines them:

- CFG (Ho & Salimans, arXiv 2207.12598): ``u + w (c - u)``;
- CFG rescale (Lin et al., arXiv 2305.08891): the guided v-prediction rescaled to the conditional
  one's standard deviation per sample, mixed with weight ``phi``: ``phi * v_cfg * std(v_c) /
  std(v_cfg) + (1 - phi) * v_cfg``;
- guidance interval (Kynkaenniemi et al., arXiv 2404.07724): CFG only while the time lies in
  ``[t_lo, t_hi]``; outside it the step is the conditional model alone (one call);
- PAG (Ahn et al., arXiv 2403.17377): ``+ s (c - p)``, ``p`` with identity self-attention in the
  chosen layers; with CFG the three predictions share the call (``u + w (c - u) + s (c - p)``);
- CFG++ (Chung et al., arXiv 2406.08070): the data prediction ``x0_u + lambda (x0_c - x0_u)``
  with the UNCONDITIONAL noise prediction, so DDIM renoises with ``eps_u``
  (``x_s = alpha_s x0_lambda + sigma_s eps_u``, the paper's sampler); ``lambda`` in [0, 1]. The
  unconditional data prediction rides along in ``Prediction.extras["x0_uncond"]``: DPM-Solver++
  (2M, 3M, SDE) renoises with ``eps_u`` and keeps it in its history (the paper's multistep sampler,
  :mod:`decoding.solvers.dpm_solver_pp`).

Every solver reads ``Prediction.x0`` / ``Prediction.eps``: the combinations apply to all of them
(CFG++'s paper samplers are DDIM and DPM-Solver++; the other solvers take ``x0_lambda`` as their
data prediction). Guidance rescale works on ``v`` (:func:`~decoding.solvers.parameterization.velocity`
and :func:`~decoding.solvers.parameterization.to_prediction`, the one place that converts).
``Prediction.nfe`` is the number of variants per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from decoding.core.protocols import Model
from decoding.core.types import Prediction, State
from decoding.processes.continuous import state_coefficients, state_times
from decoding.solvers.parameterization import to_prediction, velocity


@dataclass(frozen=True)
class CFG:
    """Classifier-free guidance ``u + scale (c - u)``.

    Args:
        scale: ``w >= 0`` (1 = the conditional model, 0 = the unconditional one).
        rescale: ``phi`` in [0, 1] of guidance rescale (0 = off).
        interval: ``(t_lo, t_hi)`` in the schedule's time: guide only there (None = always).
    """

    scale: float
    rescale: float = 0.0
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.scale < math.inf:
            raise ValueError(f"CFG scale must be a finite number >= 0, got {self.scale}")
        if not 0 <= self.rescale <= 1:
            raise ValueError(f"CFG rescale (phi) must lie in [0, 1], got {self.rescale}")
        if self.interval is not None and not self.interval[0] <= self.interval[1]:
            raise ValueError(f"CFG interval must be (t_lo, t_hi) with t_lo <= t_hi, got {self.interval}")

    def spec(self) -> str:
        extra = f",rescale={self.rescale:g}" if self.rescale else ""
        extra += f",interval={self.interval[0]:g}-{self.interval[1]:g}" if self.interval else ""
        return f"cfg:{self.scale:g}{extra}"


@dataclass(frozen=True)
class CFGPP:
    """CFG++ with ``lam`` in [0, 1] (0 = the unconditional model)."""

    lam: float

    def __post_init__(self) -> None:
        if not 0 <= self.lam <= 1:
            raise ValueError(f"CFG++ lambda must lie in [0, 1], got {self.lam}")

    def spec(self) -> str:
        return f"cfgpp:{self.lam:g}"


@dataclass(frozen=True)
class PAG:
    """Perturbed-attention guidance ``+ scale (c - p)``.

    Args:
        scale: ``s >= 0``.
        layers: self-attention layers to perturb, by index into the network's attention layers or
            by exact module name (e.g. ``"mid.1"``); None = the middle layer (the paper's choice).
    """

    scale: float
    layers: tuple[int | str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.scale < math.inf:
            raise ValueError(f"PAG scale must be a finite number >= 0, got {self.scale}")

    def spec(self) -> str:
        return f"pag:{self.scale:g}" + (f",layers={'+'.join(map(str, self.layers))}" if self.layers else "")


def attention_layer_indices(net: Any, layers: Sequence[int | str] | None) -> list[int]:
    """Indices into ``net.attention_layers()`` of ``layers`` (indices or EXACT module names)."""
    names = [n for n, m in net.named_modules() if m in set(net.attention_layers())]
    if layers is None:
        return [len(names) // 2]
    out = []
    for item in layers:
        if isinstance(item, int) or (isinstance(item, str) and item.lstrip("-").isdigit()):
            i = int(item)
            if not 0 <= i < len(names):
                raise ValueError(f"attention layer {i} out of range: the network has {len(names)} ({', '.join(names)})")
            out.append(i)
        elif item in names:
            out.append(names.index(item))
        else:
            raise ValueError(f"no self-attention layer named {item!r}; the network's are: {', '.join(names)}")
    return out


class GuidedModel:
    """One batched call for every prediction the given guidance needs (see the module docstring).

    Args:
        model: a class-conditional continuous model reading ``state.memory["cond"]`` (labels) and,
            for PAG, ``state.memory["perturb"]`` (``(rows, layer indices)``); its schedule must be
            in ``state.memory["schedule"]`` (the continuous process puts it there).
        null_label: the unconditional label.
        cfg, cfgpp, pag: the guidance terms (CFG++ does not combine with the others).
        pag_layers: attention layer indices for PAG (see :func:`attention_layer_indices`).
    """

    def __init__(
        self,
        model: Model,
        null_label: int,
        cfg: CFG | None = None,
        cfgpp: CFGPP | None = None,
        pag: PAG | None = None,
        pag_layers: Sequence[int] = (),
    ) -> None:
        if cfgpp is not None and (cfg is not None or pag is not None):
            raise ValueError("CFG++ does not combine with CFG or PAG: give one of them")
        if cfg is None and cfgpp is None and pag is None:
            raise ValueError("GuidedModel needs at least one guidance term")
        self.model, self.null_label = model, int(null_label)
        self.cfg, self.cfgpp, self.pag = cfg, cfgpp, pag
        self.pag_layers = list(pag_layers)
        self._labels: tuple[Any, int, Tensor] | None = None

    def variants(self, state: State) -> list[str]:
        """Which predictions this step needs: ``"c"`` always, ``"u"`` (null label), ``"p"`` (perturbed)."""
        out = ["c"]
        if self.cfgpp is not None or (self.cfg is not None and self._inside(state)):
            out.append("u")
        if self.pag is not None:
            out.append("p")
        return out

    def _inside(self, state: State) -> bool:
        if self.cfg is None or self.cfg.interval is None:
            return True
        t = state_times(state)
        lo, hi = self.cfg.interval
        inside = (t >= lo) & (t <= hi)
        if not bool(inside.all() == inside.any()):
            raise ValueError("rows of one batch are at different times: the guidance interval needs one time per batch")
        return bool(inside[0])

    def _row_labels(self, cond: Any, b: int, device: torch.device) -> Tensor:
        if self._labels is not None and self._labels[0] is cond and self._labels[1] == b:
            return self._labels[2]
        y = torch.full((b,), self.null_label, dtype=torch.long) if cond is None else torch.as_tensor(cond).long()
        y = y.reshape(-1).to(device)
        if y.numel() == 1:
            y = y.expand(b)
        if y.shape != (b,):
            raise ValueError(f"need one class label per row ({b}), got {y.numel()}")
        self._labels = (cond, b, y)
        return y

    def __call__(self, state: State) -> Prediction:
        b = state.batch_size
        names = self.variants(state)
        k = len(names)
        y = self._row_labels(state.memory.get("cond"), b, state.x.device)
        labels = torch.cat([torch.full_like(y, self.null_label) if v == "u" else y for v in names])
        memory = {**state.memory, "cond": labels}
        if "p" in names:
            rows = torch.zeros(k * b, dtype=torch.bool, device=state.x.device)
            i = names.index("p")
            rows[i * b : (i + 1) * b] = True
            memory["perturb"] = (rows, self.pag_layers)
        rep = lambda v: torch.cat([v] * k) if k > 1 else v  # noqa: E731
        pred = self.model(replace(state, x=rep(state.x), t=rep(state.t), done=rep(state.done), memory=memory))
        x0 = dict(zip(names, pred.x0.chunk(k), strict=True))
        eps = dict(zip(names, pred.eps.chunk(k), strict=True))
        nfe = torch.full((b,), float(k), device=state.done.device)
        if self.cfgpp is not None:
            lam = self.cfgpp.lam
            return Prediction(x0=x0["u"] + lam * (x0["c"] - x0["u"]), eps=eps["u"], nfe=nfe, extras={"x0_uncond": x0["u"]})
        out_x0, out_eps = x0["c"], eps["c"]
        if "u" in names:
            w = self.cfg.scale
            out_x0 = out_x0 + (w - 1) * (x0["c"] - x0["u"])
            out_eps = out_eps + (w - 1) * (eps["c"] - eps["u"])
        if "p" in names:
            s = self.pag.scale
            out_x0 = out_x0 + s * (x0["c"] - x0["p"])
            out_eps = out_eps + s * (eps["c"] - eps["p"])
        if "u" in names and self.cfg.rescale > 0:
            out_x0, out_eps = self._rescale(state, out_x0, out_eps, x0["c"], eps["c"])
        return Prediction(x0=out_x0, eps=out_eps, nfe=nfe)

    def _rescale(self, state: State, x0: Tensor, eps: Tensor, x0_c: Tensor, eps_c: Tensor) -> tuple[Tensor, Tensor]:
        """Guidance rescale in v-space (``v = alpha eps - sigma x0``), per sample."""
        alpha, sigma = state_coefficients(state, state.memory["schedule"])
        x = state.x.to(x0.dtype)
        v, v_c = (velocity(Prediction(x0=p, eps=e), x, alpha, sigma) for p, e in ((x0, eps), (x0_c, eps_c)))
        dims = tuple(range(1, v.dim()))
        ratio = v_c.float().std(dim=dims, keepdim=True) / v.float().std(dim=dims, keepdim=True).clamp_min(1e-12)
        phi = self.cfg.rescale
        v = phi * v * ratio.to(v.dtype) + (1 - phi) * v
        pred = to_prediction(v, "v", x, alpha, sigma)
        return pred.x0, pred.eps


@dataclass(frozen=True)
class Stitch:
    """T-Stitch: ``small`` (a zoo name, folder, or loaded image model) for the first ``fraction`` of the steps."""

    small: Any
    fraction: float

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"T-Stitch fraction must lie in [0, 1], got {self.fraction}")

    def spec(self) -> str:
        name = self.small if isinstance(self.small, str) else getattr(self.small, "name", type(self.small).__name__)
        return f"stitch:{name}:{self.fraction:g}"


class StitchModel:
    """Trajectory stitching (T-Stitch, Pan et al., arXiv 2402.14167): the small model for the first
    ``fraction`` of the steps (the noisiest), the large one for the rest.

    Both models must share the noise schedule and the data space (shape, classes); the step index
    and the number of steps come from the state (``state.step``, the grid in ``state.memory``).
    Each step is one call of one model (``Prediction.nfe`` is whatever that model reports).
    """

    def __init__(self, large: Model, small: Model, fraction: float) -> None:
        if not 0 <= fraction <= 1:
            raise ValueError(f"T-Stitch fraction must lie in [0, 1], got {fraction}")
        self.large, self.small, self.fraction = large, small, float(fraction)

    def switch_step(self, steps: int) -> int:
        """Steps ``0 .. switch_step - 1`` run the small model."""
        return round(self.fraction * steps)

    def __call__(self, state: State) -> Prediction:
        grid = state.memory.get("grid")
        if grid is None:
            raise ValueError("T-Stitch needs the time grid in state.memory['grid'] (run it through decode())")
        steps = int(grid.numel()) - 1
        return (self.small if state.step < self.switch_step(steps) else self.large)(state)
