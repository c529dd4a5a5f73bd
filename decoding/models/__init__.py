"""The engine's own trained models: loading checkpoints and wrapping networks as decoding models."""

from decoding.models.image import (
    SIZES,
    CheckpointError,
    ImageDiffusionModel,
    load_image_model,
    load_unet,
    save_unet,
)

__all__ = ["SIZES", "CheckpointError", "ImageDiffusionModel", "load_image_model", "load_unet", "save_unet"]
