"""Tensor ops the decode loop dispatches per autoregressive step outside the model's call.

On CUDA the model's one-token step replays a CUDA graph, but everything else in a step of
``decode()`` (the processors, the non-finite scan, the autoregressive step, the done bookkeeping)
runs eagerly: each op here is at least one kernel launch from Python per step. At batch 1 those
launches, not the graph, can set the pace (issue 23). The count does not depend on the device or
on the model's size, so it is taken on the CPU with a one-layer model of SmolLM2's vocabulary
(``TorchDispatchMode``, ops counted only while the model is not running).

It also times the loop's host work per step with a null model (a fixed ``(1, V)`` logits tensor,
``--time-vocab`` entries, small so that the ops' arithmetic is negligible): what a step costs the
host before any kernel launch.

    python benchmarks/loop_ops.py
    python benchmarks/loop_ops.py --configs temperature=0.8,top_p=0.95 temperature=1.0 typical=0.9
"""

from __future__ import annotations

import argparse
import collections
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from decoding.adapters.static_cache import StaticCausalLM
from decoding.core.loop import decode
from decoding.core.types import Prediction, State
from decoding.nn.transformer import Transformer, TransformerConfig
from decoding.processes.autoregressive import Autoregressive
from decoding.processors import standard_processors


class _Counter(TorchDispatchMode):
    """Counts dispatched ops by name while ``active`` is True."""

    def __init__(self) -> None:
        super().__init__()
        self.active = True
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if self.active:
            self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(lm: StaticCausalLM, prompt: torch.Tensor, config: dict[str, float], steps: int) -> tuple[float, list]:
    """Ops per step outside ``lm``'s call: the difference between ``steps`` and ``steps // 2`` steps (no prefill)."""
    procs = standard_processors(**config)
    counts = []
    for n in (steps // 2, steps):
        counter = _Counter()

        def model(state: State, counter: _Counter = counter) -> Prediction:
            counter.active = False
            try:
                return lm(state)
            finally:
                counter.active = True

        with counter:
            decode(model, Autoregressive(), prompt, steps=n, processors=procs, seed=0, sync_every=8)
        counts.append(counter)
    extra = steps - steps // 2  # the steps the longer run adds
    diff = counts[1].ops - counts[0].ops
    per_step = (sum(counts[1].ops.values()) - sum(counts[0].ops.values())) / extra
    return per_step, [(k, v / extra) for k, v in diff.most_common(12)]


def host_us_per_step(config: dict[str, float], vocab: int, steps: int, reps: int = 5) -> float:
    """Best-of-``reps`` wall time per step of ``decode()`` with a null model, in microseconds."""
    logits = torch.randn(1, vocab, generator=torch.Generator().manual_seed(0))

    def model(state: State) -> Prediction:
        return Prediction(logits=logits.clone(), memory={})

    procs = standard_processors(**config)
    prompt = torch.randint(0, vocab, (1, 32), generator=torch.Generator().manual_seed(1))
    best = float("inf")
    for rep in range(reps):
        t0 = time.perf_counter()
        decode(model, Autoregressive(), prompt, steps=steps, processors=procs, seed=rep, sync_every=8)
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best / steps


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["temperature=0.8,top_p=0.95", "temperature=1.0"])
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--steps", type=int, default=64, help="even; the count is the difference of steps and steps/2")
    p.add_argument("--time-vocab", type=int, default=512, help="vocabulary of the null model that times the host work")
    p.add_argument("--time-steps", type=int, default=256)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = TransformerConfig(vocab_size=args.vocab, dim=64, n_layers=1, n_heads=4, n_kv_heads=2, hidden=128)
    lm = StaticCausalLM(Transformer(cfg).eval(), capacity=args.steps + 40, backend="sdpa", compile=False,
                        cuda_graphs=False)
    prompt = torch.randint(0, args.vocab, (1, 32))
    out = {}
    for text in args.configs:
        config = {k: float(v) for k, v in (kv.split("=") for kv in text.split(","))}
        per_step, top = ops_per_step(lm, prompt, config, args.steps)
        host = host_us_per_step(config, args.time_vocab, args.time_steps)
        out[text] = {"ops_per_step": per_step, "top": top, "host_us_per_step": host}
        print(f"{text}: {per_step:.2f} ops per step outside the model; host work {host:.1f} us per step "
              f"(null model, V={args.time_vocab}, 1 thread); most frequent: "
              + ", ".join(f"{k} {v:.2f}" for k, v in top))
    return out


if __name__ == "__main__":
    main()
