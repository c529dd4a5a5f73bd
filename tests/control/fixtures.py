"""A tiny random image-model folder for the control tests (scripts and the CLI load models from folders)."""

from __future__ import annotations

from pathlib import Path

from decoding.models.image import TRAIN_SCHEDULE, save_unet
from tests.api.fixtures import tiny_unet_model


def tiny_model_folder(folder: Path) -> Path:
    """Save the tiny UNet (random weights, the training schedule) as a model folder; returns it."""
    return save_unet(tiny_unet_model().net, folder, {"prediction": "v", "schedule": TRAIN_SCHEDULE})
