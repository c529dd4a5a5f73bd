"""A guidance-distilled student (Meng et al., arXiv 2210.03142) as an engine model, and its construction from a teacher.

The student is a :class:`~decoding.nn.unet.UNet` with ``guidance_embedding=True``: it reads the
noise level, the class and Meng et al.'s guidance weight ``w`` (see :mod:`decoding.distill.targets`)
and predicts the guided v in ONE call. :func:`student_from_teacher` copies a teacher's weights into
such a network; the guidance embedding starts at zero, so the new student equals the teacher's
conditional model at every ``w`` (the stage-1 target at ``w = 0``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.models.image import ImageDiffusionModel
from decoding.nn.unet import UNet, UNetConfig


def student_from_teacher(teacher: UNet) -> UNet:
    """A float32 CPU student UNet: the teacher's architecture and weights plus a zero-output guidance embedding.

    ``teacher`` may itself be a student (stage 2: the previous round), then this is a plain copy.
    """
    cfg = UNetConfig.from_dict({**teacher.cfg.to_dict(), "guidance_embedding": True})
    student = UNet(cfg)
    state = {k: v.detach().to("cpu", torch.float32) for k, v in teacher.state_dict().items()}
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("guidance_emb.") for k in missing):
        raise ValueError(f"teacher weights do not fit the student: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return student


class GuidedStudentModel(ImageDiffusionModel):
    """``model(state) -> Prediction(x0, eps)`` of a w-conditioned student: one network call per step.

    Reads the class labels and the weights from ``state.memory["cond"] = {"class": labels, "w": w}``
    (labels as for :class:`~decoding.models.image.ImageDiffusionModel`; ``w`` a number or ``(B,)``,
    Meng et al.'s weight, ``0`` = the conditional model).
    """

    def __init__(self, net: UNet, *args: Any, **kwargs: Any) -> None:
        if not net.cfg.guidance_embedding:
            raise ValueError("a guided student needs a UNet with guidance_embedding=True (this one has none)")
        super().__init__(net, *args, **kwargs)
        self._w_cache: tuple[Any, int, Tensor] | None = None
        self._w: Tensor | None = None

    def weights(self, cond: Any, batch: int, device: torch.device) -> Tensor:
        """``(B,)`` float32 weights from ``cond["w"]`` (one per row or one for all), made once per ``cond`` object."""
        if self._w_cache is not None and self._w_cache[0] is cond and self._w_cache[1] == batch:
            return self._w_cache[2]
        w = cond.get("w") if isinstance(cond, dict) else None
        if w is None:
            raise ValueError("a guided student needs its guidance weight: cond={'class': labels, 'w': w} (Meng et al.'s w)")
        wt = torch.as_tensor(w, dtype=torch.float32).reshape(-1)
        if wt.numel() == 1:
            wt = wt.expand(batch)
        if wt.shape != (batch,):
            raise ValueError(f"need one guidance weight or one per row ({batch}), got {wt.numel()}")
        wt = wt.to(device)
        self._w_cache = (cond, batch, wt)
        return wt

    def __call__(self, state: State) -> Prediction:
        self._w = self.weights(state.memory.get("cond"), state.x.shape[0], state.x.device)
        return super().__call__(state)

    def network(self, x: Tensor, lam: Tensor, labels: Tensor) -> Tensor:
        """One batched call with the weights of the current state; float32 output ``(B, C, H, W)``."""
        xin = x.to(self.dtype)
        if xin.device.type == "cuda":
            xin = xin.contiguous(memory_format=torch.channels_last)
        return self.forward(xin, lam.float(), labels, self._w).float()
