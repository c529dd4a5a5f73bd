"""Adapter guidance distillation (AGD; Jensen & Sadat, arXiv 2503.07274) at sampling time: one call per step.

``generate(handle, guidance=["agd:3"], class_label=...)`` attaches the trained guidance adapters of
the base model (:mod:`decoding.models.adapters`; default folder ``models/<base>-agd``, or
``agd:3,adapters=FOLDER``) and asks the adapted network for the CFG-scale-3 prediction in ONE
forward pass, where CFG needs two. The base weights stay as they are: the same handle without
``agd`` is the base model, bit for bit. Works with every solver (the prediction is an ordinary
``Prediction(x0, eps)``; ``Prediction.nfe`` is left to the loop: one per row and step).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from decoding.models.image import ImageDiffusionModel


@dataclass(frozen=True)
class AGD:
    """Adapter-distilled CFG at ``scale`` (the engine's CFG scale ``u + s (c - u)``).

    Args:
        scale: the CFG scale the adapters should reproduce; must lie in their trained range.
        adapters: the adapter folder (None: ``<base>-agd`` next to the base model / in ``models/``).
    """

    scale: float
    adapters: str | None = None

    def __post_init__(self) -> None:
        if not self.scale >= 0:
            raise ValueError(f"AGD scale must be >= 0, got {self.scale}")

    def spec(self) -> str:
        return f"agd:{self.scale:g}" + (f",adapters={self.adapters}" if self.adapters else "")


class AGDModel(ImageDiffusionModel):
    """The base image model with guidance adapters switched on: ``model(state) -> Prediction(x0, eps)``, one call.

    Args:
        base: the loaded base model (its network, schedule and parameterisation are shared, not copied).
        adapters: the :class:`~decoding.nn.guidance_adapter.GuidanceAdapters` trained on ``base`` (kept in float32).
        scale: the CFG scale (a number, or ``(B,)`` per row).
        folder: where the adapters came from (for messages and settings).
    """

    def __init__(self, base: ImageDiffusionModel, adapters: nn.Module, scale: float | Tensor, folder: Path | None = None) -> None:
        super().__init__(base.net, base.schedule, prediction=base.prediction)
        self.forward = base.forward
        # float32 even under a bfloat16 base: the Fourier frequencies must not be rounded (the adapters are tiny)
        self.adapters = adapters.to(base.device, torch.float32)
        self.scale, self.folder = scale, folder
        self._scales: tuple[int, torch.device, Tensor] | None = None

    def _row_scales(self, b: int, device: torch.device) -> Tensor:
        if self._scales is not None and self._scales[:2] == (b, device):
            return self._scales[2]
        s = torch.as_tensor(self.scale, dtype=torch.float32).reshape(-1)
        s = s.expand(b) if s.numel() == 1 else s
        if s.shape != (b,):
            raise ValueError(f"AGD needs one scale or one per row ({b}), got {s.numel()}")
        s = s.to(device)
        self._scales = (b, device, s)
        return s

    def network(self, x: Tensor, lam: Tensor, labels: Tensor) -> Tensor:
        """One batched call of the adapted network; float32 output ``(B, C, H, W)``."""
        xin = x.to(self.dtype)
        if xin.device.type == "cuda":
            xin = xin.contiguous(memory_format=torch.channels_last)
        scale = self._row_scales(x.shape[0], x.device)
        return self.forward(xin, lam.float(), labels, scale, adapters=self.adapters).float()


def attach(base: ImageDiffusionModel, spec: AGD, base_name: str, card: dict[str, Any]) -> AGDModel:
    """The :class:`AGDModel` of ``spec`` for ``base`` (adapters loaded and checked against it; scale range-checked)."""
    from decoding.models.adapters import default_adapter_folder, load_adapters

    folder = Path(spec.adapters) if spec.adapters else default_adapter_folder(base_name)
    adapters, config = load_adapters(folder, base.net, base.prediction, card.get("schedule"), base_name)
    lo, hi = (float(v) for v in config["scale_range"])
    if not lo - 1e-9 <= spec.scale <= hi + 1e-9:
        raise ValueError(f"the AGD adapters in {folder} were trained for CFG scales {lo:g} to {hi:g}; got {spec.spec()}")
    return AGDModel(base, adapters, spec.scale, folder)
