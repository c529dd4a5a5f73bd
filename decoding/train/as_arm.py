"""Training task of any-subset autoregressive models (AS-ARM).

Objective (any-order autoregression; Uria et al. arXiv:1310.1757, Shih et al. arXiv:2205.13554,
Guo & Ermon arXiv:2504.20456): per window of ``L`` tokens draw a masking rate ``r ~ U(0, 1)``, keep
``floor((1 - r) L)`` random positions visible (rank 0) and order the other ``T`` positions — uniformly at
random, or left to right with probability ``l2r_fraction`` (the order infilling decodes in); the loss is
the mean cross-entropy of the whole chain ``p(x_sigma(j) | visible, x_sigma(<j))``, all ``T`` rows from one
two-stream pass (:func:`decoding.nn.any_subset.chain_query`). Random orders also train every draft row
ASSD asks (a target given a revealed set that skips earlier targets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decoding.nn.any_subset import AnySubsetQuery, AnySubsetTransformer, chain_query, save_any_subset
from decoding.nn.transformer import TransformerConfig
from decoding.train.task import require_each
from decoding.train.text import TextConfig, TextTask

_VALID_SEED = 1


def training_batch(windows: Tensor, generator: torch.Generator, l2r_fraction: float = 0.5) -> tuple[AnySubsetQuery, Tensor]:
    """A random visible set and target order per window.

    Args:
        windows: ``(B, L)`` long token windows.
        generator: random source on ``windows.device``.
        l2r_fraction: probability that a window's targets are ordered left to right.

    Returns:
        the query (``L`` chain rows, the unused ones padding) and labels ``(B, L)`` (``-100`` on padding).
        Every row has at least one target. The shapes do not depend on the draws, so building a
        batch never waits for the device.
    """
    b, n = windows.shape
    dev = windows.device
    rate = torch.rand(b, generator=generator, device=dev)
    n_vis = ((1 - rate) * n).floor().long().clamp(0, n - 1)
    keys = torch.rand(b, n, generator=generator, device=dev)
    slot = torch.argsort(torch.argsort(keys, 1), 1)  # a uniformly random rank of every position
    visible = slot < n_vis[:, None]
    l2r = torch.rand(b, 1, generator=generator, device=dev) < l2r_fraction
    okey = torch.where(l2r, torch.arange(n, device=dev, dtype=keys.dtype).expand(b, n), torch.rand(b, n, generator=generator, device=dev))
    okey = torch.where(visible, float("inf"), okey)
    order = torch.argsort(okey, 1)
    order = torch.where(torch.arange(n, device=dev) < (n - n_vis)[:, None], order, -1)
    labels = torch.where(order >= 0, windows.gather(1, order.clamp(min=0)), -100)
    return chain_query(windows, visible, order), labels


def chain_loss(net: Callable[..., Tensor], windows: Tensor, generator: torch.Generator, l2r_fraction: float) -> Tensor:
    """Mean cross-entropy (nats per target token) of the chain on a random split of ``windows``."""
    query, labels = training_batch(windows, generator, l2r_fraction)
    logits = net(query)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


@dataclass
class AsArmConfig(TextConfig):
    """Options of the AS-ARM task (and :class:`~decoding.train.text.TextConfig`'s).

    Attributes:
        l2r_fraction: probability that a window's targets are ordered left to right.
    """

    layers: int = 6
    eval_windows: int = 256
    l2r_fraction: float = 0.5

    def check(self) -> None:
        super().check()
        require_each(self, ("l2r_fraction",), lambda v: 0.0 <= v <= 1.0, "lie in [0, 1]")


class AsArmTask(TextTask):
    """AS-ARM on a token file; validation is the chain cross-entropy on held-out windows (fixed splits)."""

    kind: ClassVar[str] = "as-arm"
    loss_name = "chain cross-entropy (nats / token)"
    card_intro = (
        "An any-subset autoregressive model (AS-ARM; arXiv:2205.13554, arXiv:2504.20456): one two-stream pass gives\n"
        "`p(x_i | revealed)` for any target and the exact chain `p(x_sigma(j) | visible, x_sigma(<j))` along any\n"
        "order, so it infills any mask pattern and serves any-subset speculative decoding (ASSD)."
    )
    config: AsArmConfig

    def build(self) -> nn.Module:
        return AnySubsetTransformer(TransformerConfig(vocab_size=self.vocab, causal=False, **self.config.transformer_sizes()))

    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        return chain_loss(net, self.windows(indices), generator, self.config.l2r_fraction)

    def validate(self, net: nn.Module) -> dict[str, float]:
        g = torch.Generator(device=self.device).manual_seed(_VALID_SEED)
        total, count = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        for w in self.valid_batches():
            query, labels = training_batch(w, g, self.config.l2r_fraction)
            logits = net(query).float()
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                     reduction="sum")
            count += (labels >= 0).sum()
        return {"loss": float(total / count)}

    def save(self, net: nn.Module, out: Path, extra: dict[str, Any], dtype: torch.dtype) -> None:
        assert isinstance(net, AnySubsetTransformer)
        save_any_subset(net, out, extra=extra, dtype=dtype)

    def export_extra(self) -> dict[str, Any]:
        return {"mask_token_id": self.vocab}

    def card_details(self, info: dict[str, Any]) -> list[str]:
        return [
            "- Network: `decoding.nn.any_subset.AnySubsetTransformer` (pre-norm transformer, RMSNorm, rotary positions,",
            "  SwiGLU; XLNet-style content and query streams via attention masks).",
            "- Objective: random visible set (masking rate ~ U(0, 1)), the rest ordered uniformly at random or, with "
            f"probability {self.config.l2r_fraction}, left to right; mean chain cross-entropy (validation: the same with "
            "fixed splits).",
        ]

    def card_usage(self, name: str) -> str:
        return (
            "import decoding as dc\n"
            f'print(dc.generate(dc.load("{name}"), "It was a ________ day.", speculative=4).text)'
        )


if __name__ == "__main__":
    raise SystemExit("decoding.train.as_arm is a training task: run `python -m decoding.train as-arm-brown ...` (see `decoding train --help`)")
