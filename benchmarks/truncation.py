"""Top-p / typical / min-p per decode step: the sort-free search against the full sort and transformers.

    # GPU (H100): SmolLM2's vocabulary, batch 1, 8, 64
    python benchmarks/truncation.py --device cuda --batch 1 8 64 --out benchmarks/results/truncation_h100.json
    # the top-p kernel (method="kernel") also at other vocabulary chunks a program than its default
    python benchmarks/truncation.py --device cuda --batch 1 8 --kernel-chunks 1024 4096
    # CPU smoke run (what the test runs)
    python benchmarks/truncation.py --device cpu --batch 2 --vocab 512 --reps 2

Rows: each processor with ``method="search"`` (:mod:`decoding.processors.cut`) and ``method="sort"``
(the sorted reference), top-p with ``method="kernel"`` (the same search in Triton,
:mod:`decoding.processors.cut_kernel`; skipped with the reason printed where triton or CUDA is
missing), and transformers' warper (the peer, when it imports), run three ways:
``eager`` (one kernel launch per op), ``graph`` (the op sequence captured once in a CUDA graph and
replayed: what a captured decode step pays; CUDA only) and ``compiled`` (``torch.compile`` with
inductor, then captured in a CUDA graph on CUDA). Logits are random ``N(0, 3^2) / 0.8`` float32, the
scale of a trained model's at temperature 0.8. Every search output is checked equal to the sort
output's kept set first, and the kernel's output equal to the search's (bit for bit). Prints microseconds per call (median of ``--reps`` timings of ``--iters``
calls) and the ratio sort / search.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoding.core.fallback import error_tail  # noqa: E402
from decoding.io import atomic_write_json  # noqa: E402
from decoding.processors import MinP, TopP, Typical  # noqa: E402


def peers() -> dict[str, Callable]:
    try:
        from transformers.generation import logits_process as tlp
    except Exception:
        return {}
    return {"top_p": lambda x: tlp.TopPLogitsWarper(0.95)(None, x), "typical": lambda x: tlp.TypicalLogitsWarper(0.9)(None, x)}


def callables() -> dict[tuple[str, str], Callable]:
    out: dict[tuple[str, str], Callable] = {}
    for method in ("search", "sort"):
        out[("top_p", method)] = TopP(0.95, method=method)
        out[("typical", method)] = Typical(0.9, method=method)
    out[("min_p", "topk-free")] = MinP(0.05)
    for name, fn in peers().items():
        out[(name, "transformers")] = fn
    return out


def kernel_callable(device: torch.device) -> tuple[Callable | None, str]:
    """``TopP(0.95, method="kernel")`` where it runs on ``device``, else ``None`` and the reason."""
    try:
        from decoding.processors.cut_kernel import kernel_available, triton
    except Exception as e:  # a broken triton install: say so, time the rest
        return None, f"cut_kernel does not import: {error_tail(e)}"
    if triton is None:
        return None, "triton is not installed"
    if not kernel_available(device):
        return None, f"the kernel runs on CUDA (or under TRITON_INTERPRET=1), not on {device}"
    return TopP(0.95, method="kernel"), ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def as_graph(fn: Callable, x: torch.Tensor) -> Callable:
    """Capture ``fn(x)`` on the static input ``x`` in a CUDA graph; the returned callable replays it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn(x)
    return lambda _x: graph.replay()


def time_us(fn: Callable, x: torch.Tensor, iters: int, reps: int, device: torch.device) -> float:
    fn(x)
    sync(device)
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(iters):
            fn(x)
        sync(device)
        samples.append((time.perf_counter() - start) / iters * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--out", type=Path, help="JSON results, rewritten after every row (what ran so far)")
    ap.add_argument("--kernel-chunks", type=int, nargs="*", default=[],
                    help="more top_p kernel rows with these vocabulary chunks a program (method kernel-c<chunk>)")
    ap.add_argument("--methods", nargs="+", help="time only these methods (search, sort, transformers, topk-free, "
                    "kernel; kernel also keeps the --kernel-chunks rows); the exactness checks run regardless")
    ap.add_argument("--modes", nargs="+", choices=["eager", "graph", "compiled"], help="time only these modes")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    modes = ["eager"] + (["graph"] if device.type == "cuda" else []) + ([] if args.no_compile else ["compiled"])
    if args.modes:
        modes = [m for m in modes if m in args.modes]
    wanted = (lambda m: True) if not args.methods else (
        lambda m: m in args.methods or (m.startswith("kernel-c") and "kernel" in args.methods))
    rows: list[dict] = []
    result = dict(command=" ".join(sys.argv), device=str(device), vocab=args.vocab, torch=torch.__version__,
                  host=platform.node(), gpu=torch.cuda.get_device_name() if device.type == "cuda" else None,
                  date=time.strftime("%Y-%m-%d"), load_average=os.getloadavg(), rows=rows, complete=False)

    def record(row: dict) -> None:
        rows.append(row)
        if args.out:
            atomic_write_json(args.out, result)

    kernel, why = kernel_callable(device)
    if kernel is None:
        print(f"top_p kernel rows skipped: {why}", flush=True)
        result["kernel_skipped"] = why
    for b in args.batch:
        x = torch.randn(b, args.vocab, device=device, generator=torch.Generator(device).manual_seed(b)) * 3 / 0.8
        fns = callables()
        if kernel is not None:
            from decoding.processors.cut_kernel import top_p_filter_kernel

            fns[("top_p", "kernel")] = kernel
            for chunk in args.kernel_chunks:  # x is (B, V): TopP's reshape is a no-op
                fns[("top_p", f"kernel-c{chunk}")] = lambda t, chunk=chunk: top_p_filter_kernel(t, 0.95, 1, chunk)
        for proc in ("top_p", "typical"):
            kept = [torch.isneginf(fns[(proc, m)](x)) for m in ("search", "sort")]
            if not torch.equal(*kept):  # a wrong answer is worth no timing: say so, time the rest
                print(f"batch {b:3d} {proc}: search and sort keep different sets", flush=True)
                record(dict(batch=b, processor=proc, method="search", mode="check", us=None,
                            error="search and sort keep different sets"))
        if kernel is not None and not torch.equal(kernel(x), fns[("top_p", "search")](x)):
            print(f"batch {b:3d} top_p: the kernel's output differs from the search's", flush=True)
            record(dict(batch=b, processor="top_p", method="kernel", mode="check", us=None,
                        error="the kernel's output differs from the search's"))
        for (proc, method), fn in fns.items():
            if not wanted(method):
                continue
            for mode in modes:
                if mode == "compiled" and method == "transformers":
                    continue
                try:
                    run = torch.compile(fn, dynamic=False) if mode == "compiled" else fn
                    if device.type == "cuda" and mode != "eager":
                        run = as_graph(run, x)
                    us = time_us(run, x, args.iters, args.reps, device)
                except Exception as e:  # one failing form (a compiler bug) must not cost the other rows
                    err = error_tail(e)
                    print(f"batch {b:3d} {proc:8s} {method:12s} {mode:9s}     FAILED {err}", flush=True)
                    record(dict(batch=b, processor=proc, method=method, mode=mode, us=None, error=err))
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    continue
                print(f"batch {b:3d} {proc:8s} {method:12s} {mode:9s} {us:10.1f} us", flush=True)
                record(dict(batch=b, processor=proc, method=method, mode=mode, us=us))
    print("\nsort / search and sort / kernel (>1: the search or the kernel is faster)")
    for r in rows:
        if (r["method"] == "search" or r["method"].startswith("kernel")) and r["us"]:
            ref = next((s for s in rows if s["method"] == "sort" and s["us"]
                        and all(s[k] == r[k] for k in ("batch", "processor", "mode"))), None)
            if ref is not None:
                print(f"batch {r['batch']:3d} {r['processor']:8s} {r['method']:6s} {r['mode']:9s} "
                      f"{ref['us'] / r['us']:.2f}x")
    result["complete"] = True
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
