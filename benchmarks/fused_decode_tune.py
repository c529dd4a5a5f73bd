"""Block sizes of the fused small-batch decode kernels (:mod:`decoding.nn.fused_decode`), swept on a GPU.

The first H100 run of the fused step (2026-12-07, docs/perf/gpu_speed.md, section 5) found each
kernel at 7-9 us per launch with the default blocks (16 output rows and 64 inputs per step of the
product loop, so 30-96 programs looping 9-24 times): slower than the cuBLAS GEMV plus elementwise
kernels they replace. This sweeps, for one layer of a Llama-shaped model (default SmolLM2-135M's:
dim 576, 9 query and 3 key/value heads of 64, MLP hidden 1536, bf16), each kernel over
``block`` (output rows per program) x ``block_k`` (inputs per loop step) x ``num_warps``, with the
products on CUDA cores (any block: many programs, few loop steps) and with ``tl.dot`` (blocks of 16
rows or more, the batch padded to 16), and times
it beside the unfused torch ops it replaces (the peer), both as CUDA graphs of ``--launches``
launches (so the time is a launch inside a graph, as in the decode step), median of ``--reps``
replays. Every configuration's output is checked against the peer's before it is timed.

    python benchmarks/fused_decode_tune.py --batch 1 8 --out fused_tune.json

Prints a table per kernel and the best configuration with its ratio to the peer; the JSON's
``"best"`` list is the table :func:`decoding.nn.fused_decode.launch_config` reads (point
``DECODING_FUSED_CONFIGS`` at it, or ship it as ``decoding/nn/fused_decode_tuned.json``).

The split attention kernel (:func:`decoding.nn.decode_attention.decode_attention_partials`, kernel
``"decode_attention"``) is swept over its own knobs: ``--attn-block-n`` keys per inner block x
``--attn-splits`` key chunks x ``--warps``, with ``tl.dot`` (the ``G`` queries padded to 16) and on CUDA
cores, on a cache of ``--slots`` slots (default 328: ``benchmarks/text_generate.py``'s default 289-slot
capacity rounded up to 320, plus 8 scratch slots); its peer is today's launch (or, with ``--attn-peer sdpa``,
PyTorch's SDPA as the compiled unfused step calls it: such rows say ``"peer": "sdpa"``), and its table rows hold
``block`` = keys per block and ``block_k`` = keys per chunk, keyed by ``K`` = slots and ``N`` = ``Hkv G D``.
``--kernels`` restricts the sweep to some cases (e.g. ``--kernels decode_attention``). With
``TRITON_INTERPRET=1`` on a CPU it runs the same checks at ``--tiny`` size with plain wall-clock
times (a smoke test, no figures).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoding.nn import fused_decode as fd  # noqa: E402
from decoding.nn.attention import attention as attention_op  # noqa: E402
from decoding.nn.decode_attention import combine_splits, decode_attention_partials  # noqa: E402
from decoding.nn.transformer import apply_rotary  # noqa: E402

SMOLLM2 = {"dim": 576, "heads": 9, "kv_heads": 3, "head_dim": 64, "hidden": 1536, "chunks": 5}
TINY = {"dim": 48, "heads": 4, "kv_heads": 2, "head_dim": 16, "hidden": 40, "chunks": 2}


def rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as the model computes it (float32 inside, the input's dtype out)."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


Case = tuple[str, int, int, Callable, Callable]


def cases(shape: dict, b: int, dtype: torch.dtype, device: str, slots: int = 328, attn_peer: str = "today"
          ) -> dict[str, Case]:
    """Per use of a kernel in a layer: ``(kernel, K, N, fused(block, block_k, num_warps, dot) -> output,
    peer() -> output)`` on one layer's random weights and inputs; ``kernel``, ``K`` (inputs) and ``N``
    (output rows) key the configuration :func:`decoding.nn.fused_decode.launch_config` looks up
    (``gemv_residual`` serves two: the down projection, and the output projection of the
    six-kernel step)."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*s: int, scale: float = 1.0, dt: torch.dtype = dtype) -> torch.Tensor:
        return (torch.randn(*s, generator=g) * scale).to(device, dt)

    dim, hq, hkv, d, hidden, c = (shape[k] for k in ("dim", "heads", "kv_heads", "head_dim", "hidden", "chunks"))
    eps, s_len, pos = 1e-5, 64, 40
    x, nw = rnd(b, dim), 1 + rnd(dim, scale=0.1)
    wqkv = rnd((hq + 2 * hkv) * d, dim, scale=dim ** -0.5)
    ang = torch.arange(s_len)[:, None] / 10000 ** (torch.arange(d // 2) / (d // 2))
    cos, sin = ang.cos().to(device, dtype), ang.sin().to(device, dtype)
    positions = torch.full((b,), pos, device=device, dtype=torch.long)
    slot = torch.tensor([pos], device=device)
    kv_fused = torch.zeros(2, b, hkv, s_len, d, device=device, dtype=dtype)
    kv_peer = kv_fused.clone()
    wo, res = rnd(dim, hq * d, scale=(hq * d) ** -0.5), rnd(b, dim)
    parts = rnd(b, hkv, c, hq // hkv, d, dt=torch.float32)
    lse = rnd(b, hkv, c, hq // hkv, dt=torch.float32)
    wgu, wd, a = rnd(2 * hidden, dim, scale=dim ** -0.5), rnd(dim, hidden, scale=hidden ** -0.5), rnd(b, hidden)
    ao = rnd(b, hq * d)

    def qkv_peer() -> torch.Tensor:
        t = F.linear(rms(x, nw, eps), wqkv).view(b, 1, hq + 2 * hkv, d)
        qk = apply_rotary(t[:, :, : hq + hkv], cos[positions][:, None, None], sin[positions][:, None, None])
        kv_peer[:, :, :, slot] = torch.stack([qk[:, :, hq:], t[:, :, hq + hkv:]]).transpose(2, 3)
        return qk[:, 0, :hq].reshape(b, hkv, hq // hkv, d)

    # the split attention over a cache of ``slots`` slots, the last few empty (scratch) and a few holes
    qa = rnd(b, hkv, hq // hkv, d)
    ka, va = rnd(b, hkv, slots, d), rnd(b, hkv, slots, d)
    valid = torch.ones(b, slots, dtype=torch.int8, device=device)
    valid[:, slots - 8:] = 0
    valid[:, 5:9] = 0

    today_splits = max(1, min(cdiv(slots, 64), cdiv(512, b * hkv)))  # decode_attention_partials' untuned launch
    today_chunk = cdiv(cdiv(slots, today_splits), 64) * 64

    def attention(block_n: int | None = None, chunk: int | None = None, warps: int | None = None,
                  dot: bool | str | None = None) -> torch.Tensor:
        splits = None if chunk is None else cdiv(slots, chunk)
        mma = dot == "mma" and dtype != torch.float32  # tensor cores on a half-precision cache only
        out, lse_ = decode_attention_partials(qa, ka, va, valid, splits=splits, block_n=block_n, num_warps=warps,
                                              dot=None if dot is None else bool(dot), mma=mma)
        return combine_splits(out, lse_)

    # SDPA as the engine's compiled unfused step calls it: the G query heads of a key/value head as G queries,
    # the slot mask as one additive bias a step (decoding.adapters.static_cache.static_forward)
    bias = torch.zeros((), dtype=dtype, device=device).masked_fill(
        ~valid.bool()[:, None, None, :].expand(b, 1, hq // hkv, slots), float("-inf"))

    def sdpa_peer() -> torch.Tensor:
        return attention_op(qa, ka, va, mask=bias, backend="sdpa")

    def gate_up_peer() -> torch.Tensor:
        gg, u = F.linear(rms(x, nw, eps), wgu).chunk(2, dim=-1)
        return F.silu(gg) * u

    return {
        "norm_qkv_rotary_cache": (
            "norm_qkv_rotary_cache", dim, (hq + 2 * hkv) * d,
            lambda blk, bk, nw_, dot: fd.norm_qkv_rotary_cache(x, nw, wqkv, cos, sin, positions, kv_fused, slot, hq,
                                                              eps, block_r=blk, block_k=bk, num_warps=nw_, dot=dot),
            qkv_peer),
        "combine_gemv_residual": (
            "combine_gemv_residual", hq * d, dim,
            lambda blk, bk, nw_, dot: fd.combine_gemv_residual(parts, lse, wo, res, block_n=blk, block_k=bk,
                                                              num_warps=nw_, dot=dot),
            lambda: res + F.linear(combine_splits(parts, lse).to(dtype).reshape(b, hq * d), wo)),
        "norm_gate_up_silu": (
            "norm_gate_up_silu", dim, 2 * hidden,
            lambda blk, bk, nw_, dot: fd.norm_gate_up_silu(x, nw, wgu, eps, block_n=blk, block_k=bk, num_warps=nw_,
                                                          dot=dot),
            gate_up_peer),
        "gemv_residual (down)": (
            "gemv_residual", hidden, dim,
            lambda blk, bk, nw_, dot: fd.gemv_residual(a, wd, res, block_n=blk, block_k=bk, num_warps=nw_, dot=dot),
            lambda: res + F.linear(a, wd)),
        "gemv_residual (o)": (
            "gemv_residual", hq * d, dim,
            lambda blk, bk, nw_, dot: fd.gemv_residual(ao, wo, res, block_n=blk, block_k=bk, num_warps=nw_, dot=dot),
            lambda: res + F.linear(ao, wo)),
        "decode_attention": ("decode_attention", slots, hq * d, attention,
                             sdpa_peer if attn_peer == "sdpa"
                             else lambda: attention(64, today_chunk, 4, True)),  # today's launch, Triton's 4 warps
    }


def configurations(blocks: list[int], block_ks: list[int], warps: list[int], dot_blocks: list[int],
                   dot_block_ks: list[int]) -> list[tuple[int, int, int, bool]]:
    """``(block, block_k, warps, dot)``: products on CUDA cores at every ``blocks`` x ``block_ks``, and
    with ``tl.dot`` (at least 16 rows a program) at ``dot_blocks`` x ``dot_block_ks``."""
    plain = [(blk, bk, w, False) for blk, bk, w in itertools.product(blocks, block_ks, warps)]
    dot = [(blk, bk, w, True) for blk, bk, w in itertools.product(dot_blocks, dot_block_ks, warps) if blk >= 16]
    return plain + dot


ATTN_MODES = {"dot": True, "fma": False, "mma": "mma"}  # --attn-modes -> the sweep's ``dot`` value


def attention_configurations(block_ns: list[int], splits: list[int], warps: list[int], slots: int,
                             modes: tuple[str, ...] = ("dot", "fma")) -> list[tuple[int, int, int, bool | str]]:
    """``(block_n, chunk, warps, dot)`` for the split attention: keys per chunk from ``splits`` (whole
    blocks of ``block_n``), each in every mode of ``modes``: ``"dot"`` (``tl.dot`` on float32 operands,
    ``dot=True``), ``"fma"`` (CUDA-core products, ``False``), ``"mma"`` (tensor cores on the bf16 cache,
    ``"mma"``); duplicates dropped."""
    out = []
    for bn, sp, w, dot in itertools.product(block_ns, splits, warps, [ATTN_MODES[m] for m in modes]):
        chunk = cdiv(cdiv(slots, sp), bn) * bn
        if (bn, chunk, w, dot) not in out:
            out.append((bn, chunk, w, dot))
    return out


def per_launch_us(fn: Callable[[], object], launches: int, reps: int, cuda: bool) -> float:
    """Median time of one launch of ``fn``: inside a CUDA graph of ``launches`` launches on CUDA,
    plain wall clock elsewhere."""
    fn()
    if not cuda:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e6
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(launches):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / launches)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8],
                   help="output rows per program, products on CUDA cores")
    p.add_argument("--block-k", type=int, nargs="+", default=[256, 512, 1024], help="inputs per loop step, same")
    p.add_argument("--dot-blocks", type=int, nargs="+", default=[16, 32], help="output rows per program with tl.dot")
    p.add_argument("--dot-block-k", type=int, nargs="+", default=[64, 128], help="inputs per loop step with tl.dot")
    p.add_argument("--warps", type=int, nargs="+", default=[2, 4])
    p.add_argument("--launches", type=int, default=50, help="launches per CUDA graph")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--attn-block-n", type=int, nargs="+", default=[16, 32, 64], help="split attention: keys per block")
    p.add_argument("--attn-splits", type=int, nargs="+", default=[1, 2, 3, 5, 8], help="split attention: key chunks")
    p.add_argument("--attn-warps", type=int, nargs="+", default=[1, 2, 4], help="split attention: warps")
    p.add_argument("--slots", type=int, default=328, help="split attention: cache slots")
    p.add_argument("--attn-modes", nargs="+", choices=tuple(ATTN_MODES), default=["dot", "fma"],
                   help="split attention: products with tl.dot on float32 (dot), on CUDA cores (fma), on tensor "
                        "cores in the cache's bf16 (mma)")
    p.add_argument("--attn-peer", choices=("today", "sdpa"), default="today",
                   help="split attention's peer: today's launch of the kernel, or PyTorch's SDPA as the compiled "
                        "unfused step calls it (rows timed against SDPA name it)")
    p.add_argument("--kernels", nargs="+", default=None,
                   help="only these cases or kernels (e.g. decode_attention, norm_gate_up_silu); default: all")
    p.add_argument("--tiny", action="store_true", help="a toy layer (the CPU smoke test under TRITON_INTERPRET=1)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not fd.interpreting()
    if not (cuda or fd.interpreting()) or not fd.triton_available():
        sys.exit("needs triton and a CUDA GPU (or TRITON_INTERPRET=1 on a CPU, with --tiny)")
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    shape = TINY if args.tiny else SMOLLM2
    hw = torch.cuda.get_device_name() if cuda else "cpu (Triton interpreter: times are not figures)"
    results: dict = {"device": hw, "torch": torch.__version__, "shape": shape, "dtype": str(dtype), "rows": []}
    print(f"{hw} | {dtype} | layer {shape}")
    results["best"] = []
    grid = configurations(args.blocks, args.block_k, args.warps, args.dot_blocks, args.dot_block_k)
    attn_grid = attention_configurations(args.attn_block_n, args.attn_splits, args.attn_warps, args.slots,
                                         tuple(args.attn_modes))
    for b in args.batch:
        for name, (kernel, k, n, fused, peer) in cases(shape, b, dtype, device, args.slots, args.attn_peer).items():
            if args.kernels and name not in args.kernels and kernel not in args.kernels:
                continue
            ref = peer().float()
            peer_us = per_launch_us(peer, args.launches, args.reps, cuda)
            rows = []
            for blk, bk, w, dot in attn_grid if kernel == "decode_attention" else grid:
                row = {"case": name, "kernel": kernel, "K": k, "N": n, "batch": b, "block": blk, "block_k": bk,
                       "warps": w, "dot": bool(dot), "mma": dot == "mma"}
                try:
                    err = (fused(blk, bk, w, dot).float() - ref).abs().max().item()
                    tol = 2e-2 * max(1.0, ref.abs().max().item()) if dtype != torch.float32 else 1e-4
                    if err > tol:
                        raise AssertionError(f"max error {err:.3g} > {tol:.3g}")
                    us = per_launch_us(functools.partial(fused, blk, bk, w, dot), args.launches, args.reps, cuda)
                    rows.append({**row, "us": us, "peer_us": peer_us, "max_err": err})
                except Exception as e:  # a configuration that does not compile or is wrong is reported, not timed
                    rows.append({**row, "error": f"{type(e).__name__}: {str(e)[:120]}"})
            results["rows"].extend(rows)
            ok = sorted((r for r in rows if "us" in r), key=lambda r: r["us"])
            bad = len(rows) - len(ok)
            peer_name = (("sdpa" if args.attn_peer == "sdpa" else "today's launch") if kernel == "decode_attention"
                         else "torch ops")
            print(f"\nbatch {b}  {name}: peer ({peer_name}) {peer_us:.2f} us per launch; {len(ok)} configurations"
                  f" timed, {bad} failed")
            for r in ok[:5]:
                print(f"  block {r['block']:3d}  block_k {r['block_k']:4d}  warps {r['warps']}  dot {r['dot']:d}{' mma' if r['mma'] else ''}"
                      f"  {r['us']:7.2f} us  ({peer_us / r['us']:.2f}x the peer)  max err {r['max_err']:.2g}")
            for r in [r for r in rows if "error" in r][:3]:
                print(f"  failed: block {r['block']} block_k {r['block_k']} warps {r['warps']} dot {r['dot']}: "
                      f"{r['error']}")
            if ok:  # the table decoding.nn.fused_decode reads (DECODING_FUSED_CONFIGS, or shipped beside it)
                results["best"].append({**{key: ok[0][key] for key in ("case", "kernel", "K", "N", "batch", "block",
                                                                       "block_k", "warps", "dot", "mma", "us", "peer_us")},
                                        "peer": peer_name})
            if args.out:  # rewritten after every kernel: a run cut short keeps what it measured
                args.out.write_text(json.dumps(results, indent=1))
    if args.out:
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
