"""One decode step of SmolLM2-135M (batch B, 64 cached tokens): our static-cache step against transformers' forward.

    python benchmarks/text_decode_step.py [--batch 1 8] [--reps 12] [--threads 1]

Columns: ``ours`` (the static-cache step, eager, attending to the written slots only), ``hf``
(``LlamaForCausalLM.forward`` with a ``DynamicCache``, one token, ``logits_to_keep=1``). Calls are
interleaved; the table shows the median ms per step and the ratio hf / ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoding.adapters.llama import load_native_llama  # noqa: E402
from decoding.adapters.smollm2 import smollm2_dir  # noqa: E402
from decoding.adapters.static_cache import StaticCausalLM  # noqa: E402


def time_batch(net, hf, b: int, reps: int) -> dict[str, float]:
    """Median ms per decode step of each variant at batch ``b``."""
    from transformers import DynamicCache

    plen = 64
    lm = StaticCausalLM(net, capacity=plen + 40)
    ids = torch.randint(3, net.cfg.vocab_size, (b, plen), generator=torch.Generator().manual_seed(b))
    with torch.inference_mode():
        sess = lm.session(b, plen + 1)
        lm.prefill(sess, ids, torch.ones(b, plen, dtype=torch.bool), 0)
        sess.slot.fill_(plen)
        sess.tok.copy_(ids[:, -1:])
        sess.valid[:, plen] = True
        cache = DynamicCache(config=hf.config)
        hf(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)

        def ours() -> torch.Tensor:
            return lm._decode_step(sess, plen + 1)

        def theirs() -> torch.Tensor:
            out = hf(input_ids=ids[:, -1:], cache=cache, use_cache=True, logits_to_keep=1)
            cache.crop(-1)
            return out.logits

        torch.testing.assert_close(ours(), theirs()[:, -1], atol=2e-4, rtol=1e-4)
        fns = {"ours": ours, "hf": theirs}
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(reps):
            for k, f in fns.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--reps", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    folder = smollm2_dir()
    net = load_native_llama(folder)
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    print(f"{'batch':>5} {'ours ms':>9} {'hf ms':>8} {'hf / ours':>10}")
    for b in args.batch:
        med = time_batch(net, hf, b, args.reps)
        print(f"{b:>5} {med['ours']:>9.1f} {med['hf']:>8.1f} {med['hf'] / med['ours']:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
