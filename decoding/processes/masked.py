"""Absorbing (masked) discrete diffusion: unmask an all-mask or partly given sequence step by step.

The model predicts, for every masked position, the distribution of its clean token given the
unmasked ones: ``Prediction.logits`` ``(B, L, V)``. In RADD (Ou et al., arXiv:2406.03736) this
is *exactly* what the concrete score needs: for a masked position the score is a time scalar
times ``p0(x^i | x^UM)``, so the network takes no time input and its output stays valid until
a token changes (see :class:`decoding.wrappers.cache.CachedModel`).

One step from time ``t`` to ``s < t`` unmasks each masked position independently with
probability ``q`` and, if unmasked, draws its token from ``softmax(logits)`` (the mask id
itself is never drawn). The samplers differ in ``q`` (``m`` is the noise schedule, ``h = t - s``):

- ``euler``: first order in ``h``, ``q = min(1, h * m'(t) / m(t))`` (SEDD's Euler step,
  arXiv:2310.16834; RADD's ``euler``);
- ``exact_rate``: the unmasking rate frozen at ``t`` and integrated exactly over the step,
  ``q = 1 - exp(-h * m'(t) / m(t))``;
- ``tweedie``: Tweedie tau-leaping (SEDD) = the MDLM ancestral update (arXiv:2406.07524),
  ``q = 1 - m(s) / m(t)``; for RADD's time-independent conditionals this is the exact
  transition of the reverse process over the step;
- ``any_order``: the any-order autoregressive sampler (RADD sec. 4): positions are unmasked in a
  fixed order (given, or uniformly random per row) — one position per step when ``steps`` equals
  the number of blanks, ``ceil``-spread groups otherwise. With exact conditionals it samples the
  data distribution exactly (chain rule).

The last step (``s = 0``) unmasks every remaining blank (``q = 1``) for every sampler, as RADD does.
Positions given in the template (not the mask id) never change: prefix, suffix and arbitrary
infilling are the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from decoding.core.sampling import sample_categorical
from decoding.core.types import Prediction, State
from decoding.processes.masked_schedules import MaskSchedule, get_schedule

SAMPLERS = ("euler", "tweedie", "exact_rate", "any_order")


def unmask_probability(sampler: str, schedule: MaskSchedule, t: float, s: float) -> float:
    """Probability that a position masked at ``t`` is unmasked by the step to ``s`` (``0 <= s < t <= 1``)."""
    if s <= 0:
        return 1.0
    h = t - s
    if sampler == "tweedie":
        return 1.0 - schedule.mask_prob(s) / schedule.mask_prob(t)
    if sampler == "euler":
        return min(1.0, h * schedule.rate(t))
    if sampler == "exact_rate":
        return 1.0 - math.exp(-h * schedule.rate(t))
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")


@dataclass(frozen=True)
class Masked:
    """The absorbing-diffusion process.

    Args:
        mask_id: the mask token id (RADD: ``vocab_size``, one past the clean tokens).
        length: sequence length when ``init`` gets a batch size.
        sampler: ``"tweedie"``, ``"euler"``, ``"exact_rate"`` or ``"any_order"``.
        noise: schedule name (``"loglinear"``, ``"cosine"``, ``"poly:K"``) or object.
        order: any-order sampler only: ``(L,)`` or ``(B, L)`` permutation of positions, the order
            in which blanks are filled (given positions are skipped); ``None``: random per row.
        max_length: the model's context; longer templates are rejected.
    """

    mask_id: int
    length: int | None = None
    sampler: str = "tweedie"
    noise: Any = "loglinear"
    order: Tensor | Sequence[int] | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        object.__setattr__(self, "noise", get_schedule(self.noise))
        if self.mask_id < 0:
            raise ValueError(f"mask_id must be >= 0, got {self.mask_id}")
        if self.order is not None and self.sampler != "any_order":
            raise ValueError("order= only applies to sampler='any_order'")

    # ------------------------------------------------------------------ init
    def init(self, prompt: int | tuple[int, int] | Tensor, generator: torch.Generator) -> State:
        """Start from a template.

        Args:
            prompt: a batch size (all-mask rows of ``length``), a ``(batch, length)`` pair, or a
                long template ``(L,)`` / ``(B, L)`` whose ``mask_id`` entries are the blanks to fill.
            generator: random source (draws the random order of the any-order sampler).
        """
        x = self._template(prompt, generator.device)
        b, n = x.shape
        if self.max_length is not None and n > self.max_length:
            raise ValueError(f"template has {n} positions but the model's context is {self.max_length}; shorten it")
        blanks = x == self.mask_id
        missing = (~blanks.any(-1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(
                f"infill template row(s) {missing[:10]} have no blank (mask id {self.mask_id}) to fill; "
                "mark the positions to generate with the mask id"
            )
        memory: dict[str, Any] = {"time": 1.0, "blanks0": blanks.sum(-1)}
        if self.sampler == "any_order":
            memory["rank"] = self._ranks(blanks, generator)
        return State(
            x=x,
            t=torch.ones(b, device=x.device),
            done=torch.zeros(b, dtype=torch.bool, device=x.device),
            memory=memory,
        )

    def _template(self, prompt: int | tuple[int, int] | Tensor, device: torch.device) -> Tensor:
        if isinstance(prompt, Tensor):
            x = prompt.to(device) if prompt.device != device else prompt
            if x.dtype != torch.long or x.dim() not in (1, 2):
                raise ValueError(f"template must be a long tensor (L,) or (B, L), got {x.dtype} {tuple(x.shape)}")
            x = x[None] if x.dim() == 1 else x
            if x.shape[1] == 0:
                raise ValueError("template is empty; give at least one position")
            if bool((x < 0).any()):
                raise ValueError("template ids must be >= 0 (use the mask id for blanks)")
            return x.clone()
        if isinstance(prompt, int) and not isinstance(prompt, bool):
            if self.length is None:
                raise ValueError("init(batch_size) needs Masked(length=...); or pass a (batch, length) pair or a template")
            b, n = prompt, self.length
        elif isinstance(prompt, tuple) and len(prompt) == 2:
            b, n = int(prompt[0]), int(prompt[1])
        else:
            raise ValueError(f"prompt must be a batch size, a (batch, length) pair or a long template, got {type(prompt).__name__}")
        if b < 1 or n < 1:
            raise ValueError(f"batch size and length must be >= 1, got {b} and {n}")
        return torch.full((b, n), self.mask_id, dtype=torch.long, device=device)

    def _ranks(self, blanks: Tensor, generator: torch.Generator) -> Tensor:
        """``(B, L)`` long: the rank at which each blank is filled (0 first); given positions get ``L``."""
        b, n = blanks.shape
        if self.order is None:
            key = torch.rand(b, n, generator=generator, device=generator.device).to(blanks.device)
        else:
            order = torch.as_tensor(self.order, dtype=torch.long, device=blanks.device)
            order = order.expand(b, n) if order.dim() == 1 and order.numel() == n else order
            if order.shape != (b, n) or not bool((order.sort(-1).values == torch.arange(n, device=order.device)).all()):
                raise ValueError(f"order must be a permutation of range({n}) of shape ({n},) or ({b}, {n})")
            key = torch.empty(b, n, device=blanks.device).scatter_(
                1, order, torch.arange(n, dtype=torch.float, device=blanks.device).expand(b, n)
            )
        key = key.masked_fill(~blanks, math.inf)
        rank = torch.empty_like(blanks, dtype=torch.long)
        rank.scatter_(1, key.argsort(-1), torch.arange(n, device=blanks.device).expand(b, n))
        return rank.masked_fill(~blanks, n)

    # -------------------------------------------------------------- schedule
    def schedule(self, steps: int) -> Tensor:
        """``steps + 1`` times from 1 (all blanks masked) to 0 (none), uniform in ``t``."""
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)

    # ------------------------------------------------------------------ step
    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """Unmask some blanks of every live row, drawing their tokens from ``pred.logits`` ``(B, L, V)``."""
        x = state.x
        logits = pred.logits
        if logits is None or logits.dim() != 3 or logits.shape[:2] != x.shape:
            got = None if logits is None else tuple(logits.shape)
            raise ValueError(f"the masked process needs per-position logits of shape {(*x.shape, 'V')}, got {got}")
        t, s = float(state.memory["time"]), float(t_next)
        masked = (x == self.mask_id) & ~state.done[:, None]
        if self.sampler == "any_order":
            left = torch.ceil(state.memory["blanks0"].to(torch.float64) * self.noise.mask_prob(s) - 1e-6).long()
            unmask = masked & (state.memory["rank"] < (state.memory["blanks0"] - left)[:, None])
        else:
            q = unmask_probability(self.sampler, self.noise, t, s)
            u = torch.rand(x.shape, generator=generator, device=generator.device).to(x.device)
            unmask = masked & (u < q)
        pos = unmask.nonzero(as_tuple=True)
        if pos[0].numel() == 0:  # nothing unmasked: same tokens (most steps when steps >> L)
            x_new, done = x, state.done
        else:
            chosen = logits[pos]
            if chosen.shape[-1] > self.mask_id:
                chosen = chosen.clone()
                chosen[:, self.mask_id] = -math.inf
            tokens = sample_categorical(chosen, generator)
            x_new = x.index_put(pos, tokens.to(x.device))
            done = ~(x_new == self.mask_id).any(-1)
        return State(
            x=x_new,
            t=torch.full_like(state.t, s),
            done=done,
            step=state.step + 1,
            emitted=None,
            memory={**state.memory, **pred.memory, "time": s},
        )


def filled_mask(state: State, template: Tensor, mask_id: int) -> Tensor:
    """``(B, L)`` bool: the positions that were blanks in ``template`` (what the process generated)."""
    tpl = template[None] if template.dim() == 1 else template
    return (tpl == mask_id).expand_as(state.x)
