"""Attention backends side by side: ms per call for xformers, SDPA and the naive reference.

    python benchmarks/attention.py [--device cuda] [--dtype bfloat16] [--out results.json]

Prints one row per shape with each backend's time and the ratios naive/xformers and
sdpa/xformers. On CPU only SDPA and naive run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from decoding.nn.attention import attention, xformers_available

SHAPES = [
    # name, B, H, Hkv, Lq, Lk, D, causal, ragged lens (packed B=1) or None
    ("prefill causal 8x1024", 8, 16, 16, 1024, 1024, 64, True, None),
    ("encoder 32x256", 32, 8, 8, 256, 256, 64, False, None),
    ("long causal 2x4096", 2, 16, 16, 4096, 4096, 128, True, None),
    ("decode step GQA 64x1x1024", 64, 9, 3, 1, 1024, 64, True, None),
    ("ragged 16 seqs 64..1024", 1, 16, 16, None, None, 64, True, [64 * (i % 16 + 1) for i in range(16)]),
]


def _time(fn, device: torch.device, reps: int) -> float:
    for _ in range(3):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / reps
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) * 1000 / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--scale", type=float, default=1.0, help="shrink sequence lengths (e.g. 0.125 on CPU)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    backends = ["xformers", "sdpa", "naive"] if device.type == "cuda" and xformers_available() else ["sdpa", "naive"]
    rows = []
    hdr = f"{'shape':32s}" + "".join(f"{b + ' ms':>14s}" for b in backends)
    print(f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()}) dtype={dtype}")
    print(hdr + ("   naive/xf  sdpa/xf" if "xformers" in backends else "   naive/sdpa"))
    for name, b, h, hkv, lq, lk, d, causal, lens in SHAPES:
        g = torch.Generator(device=device).manual_seed(0)
        if lens is not None:
            lens = [max(1, int(n * args.scale)) for n in lens]
            lq = lk = sum(lens)
        else:
            lq, lk = max(1, int(lq * args.scale)) if lq > 1 else 1, max(1, int(lk * args.scale))
        q = torch.randn(b, h, lq, d, device=device, dtype=dtype, generator=g)
        k = torch.randn(b, hkv, lk, d, device=device, dtype=dtype, generator=g)
        v = torch.randn(b, hkv, lk, d, device=device, dtype=dtype, generator=g)
        times = {}
        for be in backends:
            fn = lambda be=be, q=q, k=k, v=v, c=causal, lens=lens: attention(q, k, v, causal=c, seq_lens_q=lens, backend=be)
            try:
                times[be] = _time(fn, device, args.reps)
            except torch.OutOfMemoryError:
                times[be] = float("nan")
                torch.cuda.empty_cache()
        line = f"{name:32s}" + "".join(f"{times[be]:14.3f}" for be in backends)
        if "xformers" in times:
            line += f"   {times['naive'] / times['xformers']:8.2f}  {times['sdpa'] / times['xformers']:7.2f}"
        else:
            line += f"   {times['naive'] / times['sdpa']:10.2f}"
        print(line)
        rows.append({"shape": name, "B": b, "H": h, "Hkv": hkv, "Lq": lq, "Lk": lk, "D": d, "causal": causal, "ms": times})
    if args.out:
        meta = {"device": str(device), "dtype": str(dtype), "torch": torch.__version__,
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
