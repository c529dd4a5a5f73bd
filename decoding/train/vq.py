"""Training task of the VQ tokenizer of the image AR model (:mod:`decoding.models.vq`; VQ-VAE, arXiv 1711.00937).

Loss: pixel MSE of the reconstruction + the codebook loss + ``beta`` x the commitment loss, on the
60,000 Fashion-MNIST training images; codes whose usage EMA falls below 3 % of the mean are moved
onto encoder outputs of the batch every step. Validation: the test-set reconstruction MSE (the
loss), the codebook's perplexity (``exp`` of the entropy of code usage) and the share of codes used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from decoding.data.fashion_mnist import CLASSES, fashion_splits
from decoding.data.weights import dtype_from_name
from decoding.models.vq import VQAutoencoder, VQConfig, save_vq, vq_losses
from decoding.train.task import Task, require_each


@dataclass
class VQTaskConfig:
    """Options of the VQ task.

    Attributes:
        codebook_size, code_dim, width, grid: :class:`~decoding.models.vq.VQConfig` sizes.
        beta: weight of the commitment loss.
        data: Fashion-MNIST folder (IDX files); default ``$DECODING_FASHION_MNIST`` or the Debian path.
        limit_data: train on the first N images only (tests).
        val_limit: validate on the first N test images.
    """

    codebook_size: int = 256
    code_dim: int = 8
    width: int = 64
    grid: int = 7
    beta: float = 0.25
    data: str | None = None
    limit_data: int | None = None
    val_limit: int | None = None

    def check(self) -> None:
        require_each(self, ("limit_data", "val_limit"), lambda v: v is None or v >= 1, "be >= 1")
        require_each(self, ("beta",), lambda v: v >= 0, "be >= 0")
        self.vq()

    def vq(self) -> VQConfig:
        return VQConfig(codebook_size=self.codebook_size, code_dim=self.code_dim, width=self.width, grid=self.grid)


def raw(net: Any) -> Any:
    """The module under a ``torch.compile`` wrapper (or ``net`` itself)."""
    return getattr(net, "_orig_mod", net)


class VQTask(Task):
    """The VQ autoencoder; shipped weights are the EMA's when the options ask for one."""

    kind: ClassVar[str] = "vq"
    SESSION: ClassVar[frozenset[str]] = frozenset({"data"})
    loss_name = "reconstruction MSE + VQ losses"

    def __init__(self, config: VQTaskConfig) -> None:
        config.check()
        self.config = config

    def setup(self, device: torch.device) -> dict[str, Any]:
        c = self.config
        (self.x, _), (self.val_x, _), info = fashion_splits(c.data, c.limit_data, c.val_limit, device)
        return info

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])

    def build(self) -> nn.Module:
        return VQAutoencoder(self.config.vq())

    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        x = self.x[indices]
        out = net(x)
        raw(net).restart_dead_codes(out[1], out[3], generator)
        return vq_losses(x, out, self.config.beta)

    def validate(self, net: nn.Module) -> dict[str, float]:
        model = raw(net)
        k = model.cfg.codebook_size
        sq = torch.zeros((), device=self.val_x.device)
        counts = torch.zeros(k, device=self.val_x.device)
        for x in self.val_x.split(1000):
            recon, _, _, tokens = model(x)
            sq += (recon.float().clamp(-1, 1) - x).pow(2).mean(dim=(1, 2, 3)).sum()
            counts += torch.bincount(tokens.flatten(), minlength=k).float()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {"loss": float(sq) / self.val_x.shape[0], "perplexity": float(entropy.exp()),
                "codes_used": float((counts > 0).float().mean())}

    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        assert isinstance(net, VQAutoencoder)
        valid = info["summary"].get("shipped_valid") or {}
        save_vq(net, out, {"classes": list(CLASSES), "valid": valid}, dtype=dtype_from_name(info["options"]["save_dtype"]))
        return [out / "config.json", out / "model.safetensors"]
