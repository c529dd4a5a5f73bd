"""Training task of RADD text models (absorbing discrete diffusion without time input).

Objective: RADD's lambda-DCE / t-DCE (Ou et al., arXiv:2406.03736, sec. 3.3; the same as MDLM's
continuous-time ELBO, arXiv:2406.07524) for the log-linear schedule. Per window ``x0`` of ``L``
tokens draw ``t`` (stratified over the batch, ``t in [eps, 1]``), mask each position with
probability ``t`` and score the clean tokens at the masked positions::

    loss = E_t [ (1 / t) * sum_{i masked} -log p_theta(x0^i | x_t) ] / L

an upper bound on the negative log-likelihood per token (nats); ``exp(loss)`` bounds perplexity.
The network (:class:`decoding.nn.radd.RADDNet`) never sees ``t``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from decoding.nn.radd import RADDNet, save_radd
from decoding.train.task import require_each
from decoding.train.text import TextConfig, TextTask

_VALID_SEED = 1


def stratified_times(batch: int, eps: float, generator: torch.Generator) -> Tensor:
    """``(batch,)`` times in ``[eps, 1)``: one uniform shift of an evenly spaced grid (low-variance sampling, MDLM)."""
    u = torch.rand((), generator=generator, device=generator.device)
    grid = (u + torch.arange(batch, device=generator.device) / batch) % 1.0
    return eps + (1.0 - eps) * grid


def dce_loss(
    log_probs: Callable[[Tensor], Tensor], x0: Tensor, mask_id: int, t: Tensor, generator: torch.Generator
) -> Tensor:
    """RADD's denoising cross-entropy for the log-linear schedule, per token (nats), averaged over the batch.

    Args:
        log_probs: ``tokens (B, L) -> (B, L, V)`` log-probabilities of clean tokens (the network).
        x0: ``(B, L)`` clean tokens.
        mask_id: the mask id fed to the network.
        t: ``(B,)`` times (masking probabilities) in ``(0, 1]``.
        generator: draws the masks.
    """
    masked = torch.rand(x0.shape, generator=generator, device=generator.device).to(x0.device) < t[:, None].to(x0.device)
    xt = torch.where(masked, torch.full_like(x0, mask_id), x0)
    lp = log_probs(xt)
    ce = -lp.gather(-1, x0[..., None]).squeeze(-1).float()  # (B, L)
    per_row = (ce * masked).sum(-1) / t.to(ce.device).float()
    return per_row.mean() / x0.shape[1]


@dataclass
class RaddConfig(TextConfig):
    """Options of the RADD task (and :class:`~decoding.train.text.TextConfig`'s).

    Attributes:
        eps: smallest mask rate ``t`` drawn in training and validation.
        eval_repeats: mask draws per validation window.
    """

    eps: float = 1e-3
    eval_repeats: int = 4

    def check(self) -> None:
        super().check()
        require_each(self, ("eps",), lambda v: 0.0 < v < 1.0, "lie in (0, 1)")
        require_each(self, ("eval_repeats",), lambda v: v >= 1, "be >= 1")


class RaddTask(TextTask):
    """RADD on a token file; validation is the DCE bound on held-out windows (fixed times and masks)."""

    kind: ClassVar[str] = "radd"
    loss_name = "DCE bound (nats / token)"
    card_intro = (
        "A RADD text model (reparameterized absorbing discrete diffusion, Ou et al. arXiv:2406.03736): a\n"
        "bidirectional transformer **without time input** that predicts `p(x0^i | unmasked tokens)` at every\n"
        "masked position; the sampler's output cache is exact because the network ignores time."
    )
    config: RaddConfig

    def build(self) -> nn.Module:
        return RADDNet(self.vocab, **self.config.transformer_sizes())

    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        x0 = self.windows(indices)
        t = stratified_times(x0.shape[0], self.config.eps, generator)
        return dce_loss(net, x0, self.vocab, t, generator)

    def validate(self, net: nn.Module) -> dict[str, float]:
        g = torch.Generator(device=self.device).manual_seed(_VALID_SEED)
        total, n = torch.zeros((), device=self.device), 0
        for _ in range(self.config.eval_repeats):
            for w in self.valid_batches():
                t = stratified_times(w.shape[0], self.config.eps, g)
                total += dce_loss(net, w, self.vocab, t, g) * w.shape[0]
                n += w.shape[0]
        return {"loss": float(total) / n}

    def save(self, net: nn.Module, out: Path, extra: dict[str, Any], dtype: torch.dtype) -> None:
        assert isinstance(net, RADDNet)
        save_radd(net, out, extra=extra, dtype=dtype)

    def export_extra(self) -> dict[str, Any]:
        return {"noise": "loglinear"}

    def card_details(self, info: dict[str, Any]) -> list[str]:
        return [
            "- Network: `decoding.nn.radd.RADDNet` over `decoding.nn.transformer.Transformer(causal=False)` (pre-norm,",
            f"  RMSNorm, rotary positions, SwiGLU); input ids `0..{self.vocab - 1}` plus the mask id {self.vocab}.",
            f"- Objective: RADD's DCE for the log-linear schedule (mask rate t ~ stratified U[{self.config.eps}, 1], weight "
            "1/t), an upper bound on the NLL per token; validation: the same bound with fixed draws "
            f"({self.config.eval_repeats} per window).",
        ]

    def card_usage(self, name: str) -> str:
        return (
            "import decoding as dc\n"
            f'print(dc.generate(dc.load("{name}"), "The ____ sat on the ____ .", n=2, steps=128).text)'
        )


if __name__ == "__main__":
    raise SystemExit("decoding.train.radd is a training task: run `python -m decoding.train radd-brown ...` (see `decoding train --help`)")
