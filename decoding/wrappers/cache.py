"""RADD's exact cache: rerun the model only on rows whose tokens changed since its last call.

RADD (Ou et al., arXiv:2406.03736, sec. 3.2) parameterizes absorbing diffusion with a network
that takes no time input, ``p0(x^i | x_t^UM)``; a sampling step that unmasks nothing leaves its
input, hence its output, unchanged. MDLM (arXiv:2406.07524) uses the same idea in its cached
sampler. :class:`CachedModel` keeps the last input and output per row in ``State.memory``
(carried by the process from ``Prediction.memory``) and calls the wrapped model only on the
rows whose ``x`` differs, in one sub-batch. The samples are identical to uncached sampling
whenever the model is row-wise and batch-invariant (a row's output depends only on that row;
true for the exact-joint test model and, on CPU in float32, for our transformer; on CUDA in bf16 a
row's logits can depend on the sub-batch shape, and on an H100 cached and uncached tokens differed
at batch 32 / 1024 steps, see docs/perf/radd.md); the cost drops to at most
``min(steps, L + 1)`` evaluations per row (one at the start, then one per step that filled at
least one of its ``<= L`` blanks). ``Prediction.nfe`` reports ``(B,)`` 1/0 per row so the loop
counts exactly the rows that ran.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from decoding.core.protocols import Model
from decoding.core.types import Prediction, State

CACHE_KEY = "radd_cache"


class CachedModel:
    """Wrap a time-independent model so that unchanged rows reuse their last prediction.

    Args:
        model: ``state -> Prediction(logits (B, L, V))``; must ignore ``state.t`` (declare it with a
            ``time_independent = True`` attribute) and treat rows independently. Only ``logits``
            is cached; the wrapped model's ``memory`` and ``extras`` are dropped.
        assume_time_independent: accept a model without the attribute (you vouch for it).
        key: the ``State.memory`` slot of the cache.
    """

    time_independent = True

    def __init__(self, model: Model, assume_time_independent: bool = False, key: str = CACHE_KEY) -> None:
        if not (getattr(model, "time_independent", False) or assume_time_independent):
            raise ValueError(
                f"{type(model).__name__} does not declare time_independent = True; caching its output across "
                "steps is exact only for a model that ignores the time (RADD). Pass "
                "assume_time_independent=True if it does."
            )
        self.model = model
        self.key = key

    def __call__(self, state: State) -> Prediction:
        b = state.batch_size
        cache = state.memory.get(self.key)
        if cache is None or cache["x"].shape != state.x.shape:
            logits = self._logits(state)
            ran = torch.ones(b, dtype=torch.bool, device=state.x.device)
        else:
            ran = (state.x != cache["x"]).any(-1) & ~state.done
            idx = ran.nonzero().flatten()
            if idx.numel() == 0:
                logits = cache["logits"]
            elif idx.numel() == b:
                logits = self._logits(state)
            else:
                logits = cache["logits"].index_copy(0, idx, self._logits(_rows(state, idx, self.key)))
        return Prediction(
            logits=logits,
            nfe=ran.to(torch.float64),
            memory={self.key: {"x": state.x, "logits": logits}},
        )

    def _logits(self, state: State) -> Tensor:
        pred = self.model(state)
        if pred.logits is None or pred.logits.dim() != 3:
            raise ValueError("CachedModel needs a model that returns per-position logits (B, L, V)")
        return pred.logits


def _rows(state: State, idx: Tensor, skip: str) -> State:
    """The sub-state of rows ``idx``: ``x``, ``t``, ``done`` and batch-leading memory tensors sliced."""
    b = state.batch_size
    memory: dict[str, Any] = {}
    for k, v in state.memory.items():
        if k == skip:
            continue
        memory[k] = v.index_select(0, idx.to(v.device)) if isinstance(v, Tensor) and v.dim() and v.shape[0] == b else v
    return State(
        x=state.x.index_select(0, idx),
        t=state.t.index_select(0, idx.to(state.t.device)),
        done=state.done.index_select(0, idx.to(state.done.device)),
        step=state.step,
        memory=memory,
    )
