"""A tiny random teacher for the distillation tests: every layer random, so that the class changes the output."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from decoding.models.image import SIZES, TRAIN_SCHEDULE, save_unet
from decoding.nn.unet import UNet


def random_unet(seed: int = 0, guidance: bool = False) -> UNet:
    """A tiny UNet whose zero-initialised layers (output, residual branches) are random too: conditional != unconditional."""
    torch.manual_seed(seed)
    cfg = copy.deepcopy(SIZES["tiny"])
    cfg.guidance_embedding = guidance
    net = UNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1 and not bool(p.any()):
                p.normal_(0, 0.1)
    return net.eval()


def tiny_teacher(folder: Path, seed: int = 0) -> Path:
    """:func:`random_unet` saved as a v-prediction model folder on the training schedule (float32)."""
    save_unet(random_unet(seed), folder, {"prediction": "v", "schedule": dict(TRAIN_SCHEDULE),
                                          "classes": [f"c{i}" for i in range(10)]}, dtype=torch.float32)
    return folder
