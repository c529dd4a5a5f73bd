"""Training task of the class-conditional image AR teacher (:mod:`decoding.models.ar_image`) on VQ tokens.

The training and test images are tokenised once by the VQ tokenizer (``--tokenizer``) on the
training device. Loss: next-token cross-entropy over ``[class, q_1..q_{n-1}] -> q_1..q_n``, with the
class replaced by the null class with probability ``label_dropout`` (classifier-free guidance).
Validation: the conditional test-set cross-entropy in nats per token (the loss) and bits per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decoding.data.fashion_mnist import CLASSES, fashion_splits
from decoding.data.weights import dtype_from_name
from decoding.models.ar_image import ARConfig, ARImageNet, save_ar
from decoding.models.vq import load_vq
from decoding.train.task import Task, require_each


@dataclass
class ARTaskConfig:
    """Options of the AR teacher task.

    Attributes:
        tokenizer: the VQ tokenizer's folder (written by ``decoding train fashion-vq``).
        tokenizer_name: the name the card gives it (a sibling folder or zoo name; default the folder's name).
        dim, n_layers, n_heads: transformer sizes.
        label_dropout: probability of the null class in training (CFG).
        default_guidance: the CFG scale the card uses when a call gives none.
        data: Fashion-MNIST folder (IDX files); default ``$DECODING_FASHION_MNIST`` or the Debian path.
        limit_data: train on the first N images only (tests).
        val_limit: validate on the first N test images.
    """

    tokenizer: str | None = None
    tokenizer_name: str | None = None
    dim: int = 256
    n_layers: int = 8
    n_heads: int = 8
    label_dropout: float = 0.1
    default_guidance: float = 1.5
    data: str | None = None
    limit_data: int | None = None
    val_limit: int | None = None

    def check(self) -> None:
        if not self.tokenizer:
            raise ValueError("--tokenizer FOLDER is required: the VQ tokenizer (decoding train fashion-vq)")
        require_each(self, ("dim", "n_layers", "n_heads", "limit_data", "val_limit"), lambda v: v is None or v >= 1, "be >= 1")
        require_each(self, ("label_dropout",), lambda v: 0.0 <= v < 1.0, "lie in [0, 1)")
        require_each(self, ("default_guidance",), lambda v: v >= 0, "be >= 0")


def tokenize(vq: Any, images: Tensor, batch: int = 1000) -> Tensor:
    """``(N, 1, 28, 28)`` -> ``(N, L)`` long tokens, ``batch`` images at a time."""
    return torch.cat([vq.encode(x) for x in images.split(batch)])


class ARTask(Task):
    """The AR teacher over the VQ tokens of Fashion-MNIST."""

    kind: ClassVar[str] = "image-ar"
    SESSION: ClassVar[frozenset[str]] = frozenset({"data", "tokenizer"})
    loss_name = "cross-entropy (nats / token)"

    def __init__(self, config: ARTaskConfig) -> None:
        config.check()
        self.config = config
        self.vq_cfg: Any = None

    def setup(self, device: torch.device) -> dict[str, Any]:
        c = self.config
        vq = load_vq(str(c.tokenizer), device)
        (x, self.y), (vx, self.val_y), info = fashion_splits(c.data, c.limit_data, c.val_limit, device)
        self.q, self.val_q = tokenize(vq, x), tokenize(vq, vx)
        self.vq_cfg = vq.cfg
        return {**info, "tokenizer": str(c.tokenizer), "vq": vq.cfg.to_dict()}

    def bind(self, data_info: dict[str, Any]) -> None:
        from decoding.models.vq import VQConfig

        self.vq_cfg = VQConfig(**data_info["vq"])

    @property
    def num_examples(self) -> int:
        return int(self.q.shape[0])

    def ar_config(self) -> ARConfig:
        c, v = self.config, self.vq_cfg
        return ARConfig(codebook_size=v.codebook_size, num_tokens=v.num_tokens, num_classes=len(CLASSES), dim=c.dim,
                        n_layers=c.n_layers, n_heads=c.n_heads)

    def build(self) -> nn.Module:
        return ARImageNet(self.ar_config())

    def _nll(self, net: Callable[..., Any], q: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
        k = self.vq_cfg.codebook_size
        seq = torch.cat([(y + k)[:, None], q[:, :-1]], dim=1)
        logits, _ = net(seq)
        return F.cross_entropy(logits.float().reshape(-1, k), q.reshape(-1), reduction=reduction)

    def loss(self, net: Callable[..., Any], indices: Tensor, generator: torch.Generator) -> Tensor:
        y = self.y[indices]
        drop = torch.rand(y.shape, generator=generator, device=y.device) < self.config.label_dropout
        return self._nll(net, self.q[indices], torch.where(drop, len(CLASSES), y))

    def validate(self, net: nn.Module) -> dict[str, float]:
        total = torch.zeros((), device=self.val_q.device)
        for q, y in zip(self.val_q.split(1000), self.val_y.split(1000), strict=True):
            total += self._nll(net, q, y, reduction="sum")
        per_token = float(total) / self.val_q.numel()
        return {"loss": per_token, "bits_per_image": per_token * self.val_q.shape[1] / math.log(2)}

    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        assert isinstance(net, ARImageNet)
        c = self.config
        tok = Path(str(c.tokenizer))
        card = {"tokenizer": {"name": c.tokenizer_name or tok.name, "path": str(tok.resolve())}, "classes": list(CLASSES),
                "defaults": {"guidance": f"cfg:{c.default_guidance:g}"},
                "valid": info["summary"].get("shipped_valid") or {}}
        save_ar(net, out, card, dtype=dtype_from_name(info["options"]["save_dtype"]))
        return [out / "config.json", out / "model.safetensors"]
