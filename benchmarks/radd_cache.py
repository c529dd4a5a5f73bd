"""Wall-clock speedup of RADD's exact cache (arXiv:2406.03736) over uncached sampling, same seed, same samples.

For each (batch, steps) the same masked-diffusion sampling runs twice through ``decoding.decode``:
with the plain RADD network and with :class:`decoding.wrappers.cache.CachedModel`. It prints the
median wall time of each, the speedup, the mean per-row NFE and whether the tokens are identical.

    python benchmarks/radd_cache.py --device cuda                       # H100: L=128, steps 128 and 1024
    python benchmarks/radd_cache.py --device cpu --batch 1 --repeats 1  # CPU

``--model`` takes a RADD folder (default ``models/radd-brown``); without one, a randomly
initialized network of the same shape is timed (the unmasking events of the tweedie/euler
samplers do not depend on the weights, so NFE and timing are the same) and the output says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from decoding.core.loop import decode  # noqa: E402
from decoding.nn.radd import RADDModel, RADDNet, cast, load_radd  # noqa: E402
from decoding.processes.masked import Masked  # noqa: E402
from decoding.wrappers.cache import CachedModel  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(model, length: int, batch: int, steps: int, sampler: str, seed: int, device: torch.device):  # noqa: ANN001, ANN201
    proc = Masked(mask_id=model_mask_id(model), length=length, sampler=sampler)
    gen = torch.Generator(device=device).manual_seed(seed)
    _sync(device)
    t0 = time.perf_counter()
    res = decode(model, proc, batch, steps=steps, generator=gen)
    _sync(device)
    return time.perf_counter() - t0, res


def model_mask_id(model) -> int:  # noqa: ANN001
    return model.model.mask_id if isinstance(model, CachedModel) else model.mask_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "radd-brown"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="auto", help="float32, bfloat16 or auto (bfloat16 on CUDA)")
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--steps", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--sampler", default="tweedie")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32, "float32": torch.float32,
             "bfloat16": torch.bfloat16}[args.dtype]
    if (Path(args.model) / "config.json").is_file():
        net = load_radd(args.model, device=device, dtype=dtype)
        source = args.model
    else:
        torch.manual_seed(0)
        net = cast(RADDNet(4096, dim=256, n_layers=8, n_heads=4, max_len=args.length), device, dtype).eval()
        source = "random init (dim 256, 8 layers, 4 heads, V 4096): no trained model at " + args.model
    plain = RADDModel(net)
    cached = CachedModel(plain)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# RADD cache benchmark on {name}, torch {torch.__version__}, dtype {dtype}, model: {source}")
    print(f"# L={args.length} sampler={args.sampler} repeats={args.repeats} (median)")
    run_once(plain, args.length, 2, 4, args.sampler, 0, device)  # warm-up (kernels, allocator)
    run_once(cached, args.length, 2, 4, args.sampler, 0, device)
    head = f"{'batch':>5} {'steps':>5} {'uncached ms':>12} {'cached ms':>10} {'speedup':>8} {'NFE/row':>8} {'cached NFE/row':>15} {'same tokens':>11}"
    print(head)
    rows = []
    for steps in args.steps:
        for b in args.batch:
            tp, tc, same = [], [], True
            for r in range(args.repeats):
                a, ra = run_once(plain, args.length, b, steps, args.sampler, args.seed + r, device)
                c, rc = run_once(cached, args.length, b, steps, args.sampler, args.seed + r, device)
                tp.append(a)
                tc.append(c)
                same &= bool(torch.equal(ra.x, rc.x))
            row = {
                "device": name, "batch": b, "steps": steps, "length": args.length, "sampler": args.sampler,
                "uncached_ms": 1000 * statistics.median(tp), "cached_ms": 1000 * statistics.median(tc),
                "nfe_uncached": float(ra.nfe.mean()), "nfe_cached": float(rc.nfe.mean()), "identical": same,
            }
            row["speedup"] = row["uncached_ms"] / row["cached_ms"]
            rows.append(row)
            print(f"{b:>5} {steps:>5} {row['uncached_ms']:>12.1f} {row['cached_ms']:>10.1f} {row['speedup']:>7.2f}x "
                  f"{row['nfe_uncached']:>8.1f} {row['nfe_cached']:>15.1f} {str(same):>11}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": source, "torch": torch.__version__, "dtype": str(dtype), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
