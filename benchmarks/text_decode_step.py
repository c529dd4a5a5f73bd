"""One decode step of SmolLM2-135M (batch B, 64 cached tokens): our static-cache step against transformers' forward.

    python benchmarks/text_decode_step.py [--batch 1 8] [--reps 12] [--threads 1]

Rows: ``ours`` (the static-cache step through :func:`decoding.nn.attention.attention`),
``ours+gqa-sdpa`` (the same step with attention replaced by SDPA's native grouped-query mode,
``enable_gqa=True``, instead of the attention module's ``repeat_interleave`` of keys and values:
the change proposed for the SDPA backend), ``hf`` (``LlamaForCausalLM.forward`` with a
``DynamicCache``, one token). Calls are interleaved; the table shows the median ms per step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import decoding.adapters.static_cache as static_cache  # noqa: E402
from decoding.adapters.llama import load_native_llama  # noqa: E402
from decoding.adapters.smollm2 import smollm2_dir  # noqa: E402
from decoding.adapters.static_cache import StaticCausalLM  # noqa: E402
from decoding.nn.attention import attention  # noqa: E402


def sdpa_gqa(q, k, v, *, mask=None, backend=None, **_):
    """SDPA with native grouped-query attention (no copy of keys/values)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])


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
        sess.valid[:, plen] = True
        cache = DynamicCache(config=hf.config)
        hf(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)

        def ours() -> torch.Tensor:
            static_cache.attention = attention
            return lm._decode_step(sess, plen + 1)

        def ours_gqa() -> torch.Tensor:
            static_cache.attention = sdpa_gqa
            try:
                return lm._decode_step(sess, plen + 1)
            finally:
                static_cache.attention = attention

        def theirs() -> torch.Tensor:
            out = hf(input_ids=ids[:, -1:], cache=cache, use_cache=True, logits_to_keep=1)
            cache.crop(-1)
            return out.logits

        torch.testing.assert_close(ours(), ours_gqa(), atol=1e-4, rtol=1e-4)
        fns = {"ours": ours, "gqa": ours_gqa, "hf": theirs}
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
    print(f"{'batch':>5} {'ours ms':>9} {'ours+gqa-sdpa ms':>17} {'hf ms':>8}")
    for b in args.batch:
        med = time_batch(net, hf, b, args.reps)
        print(f"{b:>5} {med['ours']:>9.1f} {med['gqa']:>17.1f} {med['hf']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
