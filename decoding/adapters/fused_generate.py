"""Autoregressive sampling with the whole step (model, processors, sampling, append) as one CUDA graph.

:func:`fused_generate` computes exactly what
``decode(lm, Autoregressive(eos, pad, greedy), prompt, steps=N, processors=...)`` computes, token
for token at the same seed (``tests/text/test_fused.py`` checks it on CPU), but without the
host round trips of the generic loop: the loop synchronises with the GPU three times per token
(EOS check, NaN check, NFE count), which at batch 1 costs more than the model itself. Here the
per-step work is one CUDA-graph replay plus one random-number launch, and the host looks at the
GPU every ``check_every`` steps (to stop when every row is done and to report NaN/inf logits).

The random stream is the loop's: one ``(B, V)`` float32 ``Exp(1)`` draw per step from the same
generator (the exponential race of :func:`decoding.core.sampling.sample_categorical`), drawn
outside the graph so that any ``torch.Generator`` works.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from decoding.adapters.static_cache import SCRATCH, StaticCausalLM
from decoding.core.loop import NonFiniteLogitsError
from decoding.core.protocols import Processor
from decoding.core.types import Result, State
from decoding.processes.autoregressive import Autoregressive

MAX_PLANS = 4


@torch.inference_mode()
def fused_generate(
    lm: StaticCausalLM,
    prompt: Tensor | Mapping[str, Any],
    *,
    max_new_tokens: int,
    processors: Sequence[Processor] = (),
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int = 0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    check_every: int = 16,
) -> Result:
    """Sample ``max_new_tokens`` tokens per row; same contract and output as :func:`decoding.decode`.

    Args:
        lm: the static-cache model; CUDA graphs are used when ``lm.cuda_graphs`` is on.
        prompt: ``(B, P)`` ids or ``{"input_ids", "attention_mask"}`` (left padded).
        processors: pure logits processors, applied in order (they must not synchronise with the
            host: every processor in :mod:`decoding.processors` qualifies).
        check_every: steps between host checks for "all rows done" and non-finite logits.

    Returns:
        :class:`~decoding.core.types.Result` whose state holds ``x`` ``(B, P + steps)``, the
        ``attention_mask`` and ``prompt_length`` like the autoregressive process's state.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    dev = lm.device
    if generator is None:
        generator = torch.Generator(device=dev)
        generator.seed() if seed is None else generator.manual_seed(int(seed))
    start = time.perf_counter()
    state0 = Autoregressive(eos_token_id=eos_token_id, pad_token_id=pad_token_id).init(prompt, generator)
    b, p = state0.x.shape
    n = int(max_new_tokens)
    key = (b, p, n, tuple(processors), tuple(_ids(eos_token_id)), int(pad_token_id), bool(greedy))
    plans: dict = lm.__dict__.setdefault("_fused_plans", {})
    plan = plans.pop(key, None)
    if plan is None:
        plan = _Plan(lm, b, p, n, tuple(processors), _ids(eos_token_id), int(pad_token_id), greedy)
    plans[key] = plan  # most recently used last; keep a few (each holds a KV cache and a graph)
    while len(plans) > MAX_PLANS:
        plans.pop(next(iter(plans)))
    return plan.run(state0, generator, check_every, start)


class _Plan:
    """Buffers (and, on CUDA, the captured graph) for one batch shape and processor chain."""

    def __init__(
        self,
        lm: StaticCausalLM,
        b: int,
        p: int,
        n: int,
        processors: tuple[Processor, ...],
        eos: list[int],
        pad: int,
        greedy: bool,
    ) -> None:
        dev = lm.device
        self.lm, self.p, self.n, self.width = lm, p, n, p + n
        self.processors, self.pad, self.greedy = processors, pad, greedy
        self.sess = lm.new_session(b, self.width + 1)  # private: the pool serves the loop path
        self.eos = torch.tensor(eos, dtype=torch.long, device=dev)
        # columns past the width are scratch space for the graph's warm-up runs
        self.x = torch.full((b, self.width + SCRATCH), pad, dtype=torch.long, device=dev)
        self.am = torch.zeros(b, self.width + SCRATCH, dtype=torch.bool, device=dev)
        self.done = torch.zeros(b, dtype=torch.bool, device=dev)
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        self.col = torch.full((1,), p, dtype=torch.long, device=dev)
        self.bad = torch.full((1,), -1, dtype=torch.long, device=dev)  # first step with NaN/+inf logits
        self.noise = torch.ones(b, lm.vocab_size, dtype=torch.float32, device=dev)
        self.view = State(x=self.x, t=self.t, done=self.done, memory={"attention_mask": self.am, "prompt_length": p})
        self.graph: torch.cuda.CUDAGraph | None = None
        self.no_graph = False

    def sample_and_append(self, logits: Tensor) -> None:
        """Processors, sampling and the append of one step; no host synchronisation (graph-safe)."""
        logits = logits.float()
        nonfinite = (torch.isnan(logits) | (logits == float("inf"))).any()
        self.bad.copy_(torch.where(nonfinite & (self.bad < 0), self.col - self.p, self.bad))
        for proc in self.processors:
            logits = proc(logits, self.view)
        if self.greedy:
            token = logits.argmax(-1)
        else:
            token = (torch.softmax(logits, dim=-1) / self.noise).argmax(-1)
        live = ~self.done
        token = torch.where(live, token, torch.full_like(token, self.pad))
        self.x.index_copy_(1, self.col, token[:, None])
        self.am.index_copy_(1, self.col, live[:, None])
        self.t.add_(live.long())
        if self.eos.numel():
            self.done.logical_or_((token[:, None] == self.eos[None, :]).any(-1))
        # the next model step feeds this token at this column (= cache slot)
        self.sess.tok.copy_(token[:, None])
        self.sess.slot.copy_(self.col)
        self.sess.valid.index_copy_(1, self.col, live[:, None])
        self.col.add_(1)

    def full_step(self, upto: int | None = None) -> Tensor:
        self.sample_and_append(self.lm.step_fn(self.sess, upto))
        return self.col

    def _capture(self) -> None:
        """Capture :meth:`full_step` with the column counter parked in the scratch columns."""
        real = self.col.clone()
        self.col.fill_(self.width)
        self.sess.extras.update(x=self.x, am=self.am, done=self.done, t=self.t, col=self.col, bad=self.bad)
        try:
            self.graph, _ = self.lm.capture(self.sess, self.full_step)
        except Exception as e:  # e.g. a custom processor that cannot be captured: run the steps eagerly
            warnings.warn(f"CUDA graph capture of the fused step failed ({type(e).__name__}: {str(e)[:200]}); "
                          "running it eagerly", stacklevel=3)
            self.graph, self.no_graph = None, True
        finally:
            self.sess.extras.clear()
            self.col.copy_(real)

    def run(self, state0: State, generator: torch.Generator, check_every: int, start: float) -> Result:
        p, n, lm, sess = self.p, self.n, self.lm, self.sess
        sess.valid.zero_()
        self.x.fill_(self.pad)
        self.x[:, :p] = state0.x
        self.am.zero_()
        self.am[:, :p] = state0.memory["attention_mask"]
        self.done.zero_()
        self.t.zero_()
        self.bad.fill_(-1)
        self.col.fill_(p)
        logits0 = lm.prefill(sess, state0.x, state0.memory["attention_mask"], 0)
        self._noise(generator)
        self.sample_and_append(logits0)
        if lm.cuda_graphs and n > 1 and self.graph is None and not self.no_graph:
            self._capture()
        steps_run = 1
        for i in range(1, n):
            if i % check_every == 0 and _all_done_or_bad(self.bad, self.done):
                break
            self._noise(generator)
            if self.graph is not None:
                self.graph.replay()
            else:  # eager: attend only to the written slots (the new token sits at column p + i - 1)
                self.full_step(upto=p + i)
            steps_run += 1
        _all_done_or_bad(self.bad, self.done)
        sess.length = p + steps_run
        ran = int(self.am[:, p : p + steps_run].any(0).sum())
        final = State(
            x=self.x[:, : p + ran].clone(),
            t=self.t.clone(),
            done=self.done.clone(),
            step=ran,
            memory={"attention_mask": self.am[:, : p + ran].clone(), "prompt_length": p},
        )
        nfe = self.t.to("cpu", torch.float64)
        return Result(x=final.x, state=final, nfe=nfe, steps=ran, seconds=time.perf_counter() - start)

    def _noise(self, generator: torch.Generator) -> None:
        if not self.greedy:
            self.noise.exponential_(1.0, generator=generator)


def _all_done_or_bad(bad: Tensor, done: Tensor) -> bool:
    """Host check (one synchronisation): raise on non-finite logits; True when every row is done."""
    flags = torch.cat([bad, done.all().long()[None]]).tolist()
    if flags[0] >= 0:
        raise NonFiniteLogitsError(
            f"model returned NaN or +inf logits at step {flags[0]}; check the model's dtype (try float32) and its inputs"
        )
    return bool(flags[1])


def _ids(eos: int | Sequence[int] | None) -> list[int]:
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]
