"""Tiny random DD model folders (VQ tokenizer, AR teacher, student) for fast CPU tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from decoding.data.fashion_mnist import CLASSES
from decoding.dd.student import DDStudentNet, save_student
from decoding.models.ar_image import ARConfig, ARImageNet, save_ar
from decoding.models.vq import VQAutoencoder, VQConfig, save_vq

TINY_VQ = VQConfig(codebook_size=16, code_dim=4, width=8, grid=7)
TINY_AR = ARConfig(codebook_size=16, num_tokens=49, num_classes=10, dim=32, n_layers=2, n_heads=2)


@dataclass
class Zoo:
    vq: Path
    ar: Path
    dd: Path


def tiny_zoo(root: Path, seed: int = 0) -> Zoo:
    """``root/fashion-vq``, ``root/fashion-ar`` (default guidance cfg:1.5) and ``root/fashion-ar-dd`` (re-entry at 24)."""
    torch.manual_seed(seed)
    vq = VQAutoencoder(TINY_VQ)
    save_vq(vq, root / "fashion-vq", {"classes": list(CLASSES)})
    net = ARImageNet(TINY_AR)
    tok = {"tokenizer": {"name": "fashion-vq", "path": str(root / "fashion-vq")}, "classes": list(CLASSES)}
    save_ar(net, root / "fashion-ar", {**tok, "defaults": {"guidance": "cfg:1.5"}})
    student = DDStudentNet.from_teacher(net, vq.codes.detach())
    save_student(student, root / "fashion-ar-dd", {**tok, "dd": {"teacher": "fashion-ar", "reenter": 24, "guidance": 1.5,
                                                                                  "uncond_share": 0.1},
                                                   "defaults": {"steps": 1}})
    return Zoo(root / "fashion-vq", root / "fashion-ar", root / "fashion-ar-dd")
