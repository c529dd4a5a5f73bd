"""Tiny model folders for the API tests (random weights, the shipped 4k tokenizer)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch

from decoding.data.tokenizer import default_tokenizer_path
from decoding.models.image import SIZES, TRAIN_SCHEDULE, ImageDiffusionModel, schedule_from_config
from decoding.nn.radd import RADDNet, save_radd
from decoding.nn.unet import UNet


def tiny_radd(folder: Path, seq_len: int = 24) -> Path:
    """A randomly initialised RADD folder (its card says model_type radd)."""
    torch.manual_seed(0)
    net = RADDNet(4096, dim=32, n_layers=1, n_heads=2, max_len=seq_len)
    save_radd(net, folder, extra={"seq_len": seq_len, "tokenizer": "tokenizer.model"}, dtype=torch.float16)
    shutil.copyfile(default_tokenizer_path(), folder / "tokenizer.model")
    return folder


def tiny_unet_model(seed: int = 0) -> ImageDiffusionModel:
    """The tiny UNet with random weights, as an engine model on the training schedule."""
    torch.manual_seed(seed)
    net = UNet(copy.deepcopy(SIZES["tiny"])).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ImageDiffusionModel(net, schedule_from_config(TRAIN_SCHEDULE))
