"""Fused Triton kernels for the small-batch (``B <= 8``) one-token decode step.

At batch 1 a decoder layer is a handful of matrix-vector products, each too small to keep a GPU
busy, with elementwise work (RMSNorm, rotary, the KV-cache write, SwiGLU, residual adds) between
them; every kernel launch costs a few microseconds even inside a CUDA graph, so the number of
kernels sets the step time. Following the idea of gpt-fast (a decode step as few, memory-bound
kernels) and of FlashAttention's fusion of everything around one read of the operands (arXiv
2205.14135), a layer here is five kernels:

1. :func:`norm_qkv_rotary_cache`: RMSNorm, the ``[q; k; v]`` product, rotary positions on ``q``
   and ``k``, and the write of ``k`` and ``v`` into the static cache at the step's slot; ``q``
   comes out in the ``(B, Hkv, G, D)`` layout of :func:`decoding.nn.decode_attention.decode_attention`;
2. the split-K decode attention (:func:`decoding.nn.decode_attention.decode_attention_partials`,
   not in this module), which leaves one partial result per key chunk;
3. :func:`combine_gemv_residual`: the combine of those chunks (as
   :func:`~decoding.nn.decode_attention.combine_splits`) in the prologue of the output projection,
   and the residual add: ``x + a @ Wo^T``;
4. :func:`norm_gate_up_silu`: RMSNorm, the ``[gate; up]`` product and ``silu(g) * u``;
5. :func:`gemv_residual` with the down projection.

Each program owns a block of output rows (for rotary: the matching rows of both halves of a
head, for SwiGLU: the matching rows of gate and up) and reads its weight rows once for all ``B``
tokens. It multiplies them either with ``tl.dot`` (tensor cores; the batch padded to 16 columns and
at least 16 rows a program, the smallest tile ``tl.dot`` takes) or on CUDA cores (``dot=False``: the
batch unpadded and any power-of-two block, down to one row a program, so a layer's small products
spread over more programs that each issue all their loads in one or two steps); both multiply
exactly in float32 and accumulate in float32. The launch (rows a program, inputs a loop step,
warps, ``dot``) comes from a table measured on the GPU by ``benchmarks/fused_decode_tune.py``
(:func:`launch_config`), or from the untuned defaults where it has no entry. RMSNorm is one pass: every
program reads the ``B`` input rows (``B * K`` reads, small next to the weights), multiplies them by
the norm's weight for the product and sums their squares beside it; the row scale ``1 / rms``
multiplies the finished product (a scalar per row commutes with it), so no second pass over the
input. Other roundings follow the torch modules (the projection is rounded to the weights' dtype
before rotary or SiLU, as ``F.linear`` rounds). In float32 the kernels equal the unfused step up to
the order of operations; in bfloat16 the product's operand is ``x * w_norm`` rounded once, where
RMSNorm rounds ``x / rms`` and then its product with ``w_norm``.

Runs on CUDA; with ``TRITON_INTERPRET=1`` (set before triton is imported) the same kernels run on
CPU tensors, which is how the tests check them. Sizes the kernels loop over (``K``) and the norm's
epsilon are compile-time constants (``tl.constexpr``): a model has one set, the loops need constant
bounds under Triton 3.6's interpreter, and a constant epsilon is float32 in the kernel (inductor
passes Python floats as fp64 when they are runtime arguments).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from decoding.nn.decode_attention import interpreting, pdl_launch, triton_available

try:
    import triton
    import triton.language as tl
except ImportError:  # an optional extra: the kernels need it, nothing else does
    triton = None
    tl = None

MAX_BATCH = 8  # rows per step the kernels take; larger batches use the unfused step
BLOCK_B = 16  # the batch is padded to tl.dot's smallest tile


def _rows_dot(w, a, DOT: tl.constexpr):  # jitted below, under its own name: called by every kernel
    """``w`` ``(BLOCK_R, BLOCK_K)`` weight rows times ``a`` ``(BLOCK_B, BLOCK_K)`` input rows ->
    ``(BLOCK_R, BLOCK_B)`` float32. ``DOT``: ``tl.dot`` (tensor cores; every side at least 16, so
    the batch is padded to 16); otherwise products of the float32 values summed over the inputs
    (CUDA cores; any power-of-two sizes, so a batch of one needs no padding and a program may own
    as few as one output row: more programs, each with all its loads in flight at once). Both
    multiply exactly (half-precision products are exact in float32) and sum in float32."""
    if DOT:
        return tl.dot(w, tl.trans(a), input_precision="ieee")
    else:
        return tl.sum(w.to(tl.float32)[:, None, :] * a.to(tl.float32)[None, :, :], 2)


def _norm_dot_pair(  # jitted below, under its own name: called by the two RMSNorm kernels
    x_ptr, nw_ptr, w_ptr, rows1, rows2, row_mask, B, sx_b, sw_n,
    K: tl.constexpr, EPS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr, DOT: tl.constexpr,
):
    """RMSNorm of the ``B`` input rows (weight ``nw``) times two blocks of weight rows, ``rows1`` and
    ``rows2`` (each ``(BLOCK_R,)``, masked by ``row_mask``): two ``(BLOCK_R, BLOCK_B)`` products in
    float32, each rounded to the weights' dtype as ``F.linear``'s output is. One pass over the inputs:
    their sums of squares are taken beside the product, and the row scale ``1 / rms`` multiplies the
    finished product (a scalar per row commutes with it)."""
    dt = w_ptr.dtype.element_ty
    bi = tl.arange(0, BLOCK_B)
    bm = bi < B
    kk = tl.arange(0, BLOCK_K)
    ss = tl.zeros([BLOCK_B], tl.float32)
    acc1 = tl.zeros([BLOCK_R, BLOCK_B], tl.float32)
    acc2 = tl.zeros([BLOCK_R, BLOCK_B], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        km = k0 + kk < K
        xv = tl.load(x_ptr + bi[:, None] * sx_b + (k0 + kk)[None, :], mask=bm[:, None] & km[None, :],
                     other=0.0).to(tl.float32)
        ss += tl.sum(xv * xv, 1)
        nw = tl.load(nw_ptr + k0 + kk, mask=km, other=0.0).to(tl.float32)
        h = (xv * nw[None, :]).to(dt)  # the norm's row scale goes on the product, after the loop
        wm = row_mask[:, None] & km[None, :]
        w1 = tl.load(w_ptr + rows1[:, None] * sw_n + (k0 + kk)[None, :], mask=wm, other=0.0)
        w2 = tl.load(w_ptr + rows2[:, None] * sw_n + (k0 + kk)[None, :], mask=wm, other=0.0)
        if UPCAST:  # the interpreter's tl.dot cannot multiply bf16 / fp16 (exact in fp32 all the same)
            h, w1, w2 = h.to(tl.float32), w1.to(tl.float32), w2.to(tl.float32)
        acc1 += _rows_dot(w1, h, DOT)
        acc2 += _rows_dot(w2, h, DOT)
    rstd = tl.rsqrt(ss / K + EPS)[None, :]
    return (acc1 * rstd).to(dt).to(tl.float32), (acc2 * rstd).to(dt).to(tl.float32)


# The kernels call the jitted helper by the function's own name: inductor rebuilds a user kernel's
# source with its helpers' sources, which define them under their ``__name__`` (an alias such as
# ``_norm_dot_pair_jit`` is a NameError inside a compiled step; the H100 run of 2026-12-07 12:31 UTC)
if triton is not None:
    _rows_dot = triton.jit(_rows_dot)
    _norm_dot_pair = triton.jit(_norm_dot_pair)


def _norm_qkv_rope_kernel(  # jitted below (_JITS, _kernel)
    x_ptr, nw_ptr, w_ptr, cos_ptr, sin_ptr, pos_ptr, slot_ptr, q_ptr, kv_ptr,
    B, sx_b, sw_n, s_rope, sq_b, skv_w, skv_b, skv_h, skv_s,
    K: tl.constexpr, HQ: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr, EPS: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, UPCAST: tl.constexpr, DOT: tl.constexpr,
    PDL: tl.constexpr,
):
    if PDL:  # programmatic dependent launch: nothing read or written before the previous kernel finished
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    head = tl.program_id(0)  # 0 .. HQ + 2 HKV - 1: query heads, then key heads, then value heads
    HALF: tl.constexpr = D // 2
    dt = w_ptr.dtype.element_ty
    r = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)  # rows of the head's first half
    rm = r < HALF
    bi = tl.arange(0, BLOCK_B)
    bm = bi < B
    row1 = head * D + r
    row2 = row1 + HALF
    # (BLOCK_R, BLOCK_B) each: the projection in the weights' dtype
    p1, p2 = _norm_dot_pair(x_ptr, nw_ptr, w_ptr, row1, row2, rm, B, sx_b, sw_n, K, EPS, BLOCK_R, BLOCK_B,
                            BLOCK_K, UPCAST, DOT)
    om = rm[:, None] & bm[None, :]
    pos = tl.load(pos_ptr + bi, mask=bm, other=0)
    c = tl.load(cos_ptr + pos[None, :] * s_rope + r[:, None], mask=om, other=0.0)
    s = tl.load(sin_ptr + pos[None, :] * s_rope + r[:, None], mask=om, other=0.0)
    rot = head < HQ + HKV  # value heads are not rotated
    o1 = tl.where(rot, p1 * c - p2 * s, p1).to(dt)
    o2 = tl.where(rot, p1 * s + p2 * c, p2).to(dt)
    is_q = head < HQ
    tl.store(q_ptr + bi[None, :] * sq_b + row1[:, None], o1, mask=om & is_q)
    tl.store(q_ptr + bi[None, :] * sq_b + row2[:, None], o2, mask=om & is_q)
    kvh = tl.maximum(head - HQ, 0)  # 0 .. 2 HKV - 1 for key and value heads
    which = kvh // HKV  # 0: keys, 1: values
    slot = tl.load(slot_ptr)
    base = kv_ptr + which * skv_w + bi[None, :] * skv_b + (kvh - which * HKV) * skv_h + slot * skv_s
    tl.store(base + r[:, None], o1, mask=om & (head >= HQ))
    tl.store(base + (r + HALF)[:, None], o2, mask=om & (head >= HQ))


def _gemv_residual_kernel(  # jitted below
    a_ptr, w_ptr, res_ptr, out_ptr,
    B, N, sa_b, sw_n, sr_b, so_b,
    K: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, UPCAST: tl.constexpr,
    DOT: tl.constexpr, PDL: tl.constexpr,
):
    if PDL:  # programmatic dependent launch: nothing read or written before the previous kernel finished
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    dt = w_ptr.dtype.element_ty
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    nm = n < N
    bi = tl.arange(0, BLOCK_B)
    bm = bi < B
    kk = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_N, BLOCK_B], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        km = k0 + kk < K
        a = tl.load(a_ptr + bi[:, None] * sa_b + (k0 + kk)[None, :], mask=bm[:, None] & km[None, :], other=0.0)
        w = tl.load(w_ptr + n[:, None] * sw_n + (k0 + kk)[None, :], mask=nm[:, None] & km[None, :], other=0.0)
        a = a.to(dt)
        if UPCAST:
            a, w = a.to(tl.float32), w.to(tl.float32)
        acc += _rows_dot(w, a, DOT)
    om = nm[:, None] & bm[None, :]
    res = tl.load(res_ptr + bi[None, :] * sr_b + n[:, None], mask=om, other=0.0).to(tl.float32)
    y = (acc.to(dt).to(tl.float32) + res).to(dt)  # as x + linear(a) rounds
    tl.store(out_ptr + bi[None, :] * so_b + n[:, None], y, mask=om)


def _combine_gemv_residual_kernel(  # jitted below
    o_ptr, lse_ptr, w_ptr, res_ptr, out_ptr,
    B, N, so_b, so_h, so_c, so_g, sl_b, sl_h, sl_c, sw_n, sr_b, sy_b,
    K: tl.constexpr, G: tl.constexpr, D: tl.constexpr, C: tl.constexpr, C_PAD: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, UPCAST: tl.constexpr, DOT: tl.constexpr,
    PDL: tl.constexpr,
):
    if PDL:  # programmatic dependent launch: nothing read or written before the previous kernel finished
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    dt = w_ptr.dtype.element_ty
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    nm = n < N
    bi = tl.arange(0, BLOCK_B)
    bm = bi < B
    kk = tl.arange(0, BLOCK_K)
    cc = tl.arange(0, C_PAD)  # key chunks
    acc = tl.zeros([BLOCK_N, BLOCK_B], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kf = k0 + kk  # input feature (query head h * G + g, then d), as (B, H * D) holds them
        km = kf < K
        head = kf // D
        h = head // G
        g = head % G
        m2 = bm[:, None] & km[None, :]
        # combine_splits' steps for every (row, feature), all chunks at once: (BLOCK_B, BLOCK_K, C_PAD)
        # gathers instead of three passes of C dependent ones (the first H100 run: 33.6 us a launch)
        m3 = m2[:, :, None] & (cc < C)[None, None, :]
        lse3 = tl.load(lse_ptr + bi[:, None, None] * sl_b + (h * sl_h + g)[None, :, None] + cc[None, None, :] * sl_c,
                       mask=m3, other=float("-inf"))
        top = tl.max(lse3, 2)
        top = tl.where(top == float("-inf"), 0.0, top)
        e = tl.exp(lse3 - top[:, :, None])
        total = tl.sum(e, 2)
        total = tl.where(total > 0, total, 1.0)
        o3 = tl.load(o_ptr + bi[:, None, None] * so_b + (h * so_h + g * so_g + kf % D)[None, :, None]
                     + cc[None, None, :] * so_c, mask=m3, other=0.0)
        a = tl.sum(e / total[:, :, None] * o3, 2)
        a = a.to(dt)  # attention's output in the model's dtype, as decode_attention returns it
        w = tl.load(w_ptr + n[:, None] * sw_n + kf[None, :], mask=nm[:, None] & km[None, :], other=0.0)
        if UPCAST:
            a, w = a.to(tl.float32), w.to(tl.float32)
        acc += _rows_dot(w, a, DOT)
    om = nm[:, None] & bm[None, :]
    res = tl.load(res_ptr + bi[None, :] * sr_b + n[:, None], mask=om, other=0.0).to(tl.float32)
    tl.store(out_ptr + bi[None, :] * sy_b + n[:, None], (acc.to(dt).to(tl.float32) + res).to(dt), mask=om)


def _norm_gate_up_kernel(  # jitted below
    x_ptr, nw_ptr, w_ptr, out_ptr,
    B, HIDDEN, sx_b, sw_n, so_b,
    K: tl.constexpr, EPS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr, DOT: tl.constexpr,
    PDL: tl.constexpr,
):
    if PDL:  # programmatic dependent launch: nothing read or written before the previous kernel finished
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    dt = w_ptr.dtype.element_ty
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # rows of gate; up's are HIDDEN further
    nm = n < HIDDEN
    bi = tl.arange(0, BLOCK_B)
    bm = bi < B
    g, u = _norm_dot_pair(x_ptr, nw_ptr, w_ptr, n, n + HIDDEN, nm, B, sx_b, sw_n, K, EPS, BLOCK_N, BLOCK_B,
                          BLOCK_K, UPCAST, DOT)
    act = (g / (1.0 + tl.exp(-g))).to(dt).to(tl.float32)  # silu, rounded as F.silu's output
    om = nm[:, None] & bm[None, :]
    tl.store(out_ptr + bi[None, :] * so_b + n[:, None], (act * u).to(dt), mask=om)


_FNS = {"norm_qkv_rope": _norm_qkv_rope_kernel, "gemv_residual": _gemv_residual_kernel,
        "combine_gemv_residual": _combine_gemv_residual_kernel, "norm_gate_up": _norm_gate_up_kernel}
# made at import: torch.compile traces ready kernels (as decode_attention's _JIT)
_JITS = {name: triton.jit(fn) for name, fn in _FNS.items()} if triton is not None else {}
_INTERPRETED: dict = {}


def _kernel(name: str, device: torch.device):
    """Kernel ``name`` for tensors on ``device``: compiled for CUDA, interpreted for CPU tensors
    (``TRITON_INTERPRET=1``, which must be set before triton is imported)."""
    if device.type == "cuda":
        return _JITS[name]
    if name not in _INTERPRETED:
        _INTERPRETED[name] = triton.jit(_FNS[name])
    return _INTERPRETED[name]


def fused_available(device: torch.device) -> bool:
    """Whether the kernels can run on ``device`` (CUDA, or the CPU under ``TRITON_INTERPRET=1``)."""
    return triton_available() and (device.type == "cuda" or interpreting())


def _check(what: str, x: Tensor, *weights: Tensor) -> None:
    if triton is None:
        raise RuntimeError(f"{what} needs triton: pip install triton (CUDA), or use the unfused step")
    if x.device.type != "cuda" and not interpreting():
        raise ValueError(f"{what} runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1), got {x.device}")
    if x.dim() != 2:
        raise ValueError(f"{what} expects (B, features) inputs, got {tuple(x.shape)}")
    if x.shape[0] > MAX_BATCH:
        raise ValueError(f"{what} takes at most {MAX_BATCH} rows (got {x.shape[0]}); larger batches use the "
                         "unfused step")
    for t in (x, *weights):
        if t.stride(-1) != 1:
            raise ValueError(f"{what} needs the last dimension of its inputs and weights contiguous")


def _block_k(k: int) -> int:
    return max(16, min(64, triton.next_power_of_2(k)))


def _bk(k: int, block_k: int | None) -> int:
    """The product loop's step: ``block_k`` if given (a power of two >= 16), else :func:`_block_k`."""
    if block_k is None:
        return _block_k(k)
    if block_k < 16 or block_k & (block_k - 1):
        raise ValueError(f"block_k must be a power of two >= 16, got {block_k}")
    return int(block_k)


def _launch(num_warps: int | None) -> dict:
    return {} if num_warps is None else {"num_warps": int(num_warps)}


def _load_tuned() -> list[dict]:
    """The measured launch configurations: the JSON that ``benchmarks/fused_decode_tune.py --out``
    writes (its ``"best"`` list), from ``$DECODING_FUSED_CONFIGS`` if set, else the one shipped
    beside this module (``fused_decode_tuned.json``, from an H100) if there is one. Read once, at
    import: a compiled step sees a constant table."""
    path = os.environ.get("DECODING_FUSED_CONFIGS") or str(Path(__file__).with_name("fused_decode_tuned.json"))
    if not os.path.exists(path):
        if os.environ.get("DECODING_FUSED_CONFIGS"):
            raise FileNotFoundError(f"DECODING_FUSED_CONFIGS={path}: no such file (write it with "
                                    "benchmarks/fused_decode_tune.py --out, or unset the variable)")
        return []
    with open(path) as f:
        best = json.load(f).get("best", [])
    keys = ("kernel", "K", "N", "batch", "block", "block_k", "warps", "dot")
    for row in best:
        if not all(k in row for k in keys):
            raise ValueError(f"{path}: a configuration needs {keys}; got {sorted(row)}")
    return best


TUNED: list[dict] = _load_tuned() if triton is not None else []


def tuned_row(kernel: str, b: int, k: int, n: int) -> dict | None:
    """The row of :data:`TUNED` for ``kernel``, ``k`` and ``n`` at the smallest tuned batch >= ``b``, or None."""
    above = [r for r in TUNED if (r["kernel"], r["K"], r["N"]) == (kernel, k, n) and r["batch"] >= b]
    return min(above, key=lambda r: r["batch"]) if above else None


def layer_tuned(b: int, dim: int, heads: int, kv_heads: int, head_dim: int, hidden: int) -> bool:
    """Whether :data:`TUNED` has a measured launch at batch ``b`` for every kernel of a layer of these sizes
    (the four products of the fused step; what ``StaticCausalLM(fused="auto")`` fuses)."""
    qkv = (heads + 2 * kv_heads) * head_dim
    kernels = [("norm_qkv_rotary_cache", dim, qkv), ("combine_gemv_residual", heads * head_dim, dim),
               ("norm_gate_up_silu", dim, 2 * hidden), ("gemv_residual", hidden, dim)]
    return all(tuned_row(kernel, b, k, n) is not None for kernel, k, n in kernels)


def launch_config(kernel: str, b: int, k: int, n: int) -> dict:
    """``block``, ``block_k``, ``num_warps`` and ``dot`` for ``kernel`` with ``b`` rows, ``k`` inputs
    and ``n`` outputs: the measured configuration of :data:`TUNED` for the same ``kernel``, ``k``
    and ``n`` at the smallest tuned batch >= ``b``, or the untuned defaults (16 rows a program, 64
    inputs a step, ``tl.dot``, Triton's warps) where there is none: a configuration measured at a
    smaller batch is not used for a larger one (a CUDA-core product holds ``rows x B x block_k``
    values a program, so the batch-1 winners would spill registers at batch 8)."""
    r = tuned_row(kernel, b, k, n)
    if r is None:
        return {"block": 16, "block_k": None, "num_warps": None, "dot": True}
    return {"block": r["block"], "block_k": r["block_k"], "num_warps": r["warps"], "dot": bool(r["dot"])}


def _resolve(kernel: str, b: int, k: int, n: int, block: int | None, block_k: int | None, num_warps: int | None,
             dot: bool | None) -> tuple[int, int, dict, bool, int]:
    """The launch of one call: what the caller gave, the rest from :func:`launch_config`; returns
    ``(block, block_k, launch options, dot, BLOCK_B)``. A block below 16 given without ``dot``
    multiplies without ``tl.dot`` (which needs 16)."""
    cfg = launch_config(kernel, b, k, n)
    if dot is None:
        dot = cfg["dot"] if block is None else (cfg["dot"] and block >= 16)
    block = cfg["block"] if block is None else block
    block_k = cfg["block_k"] if block_k is None else block_k
    num_warps = cfg["num_warps"] if num_warps is None else num_warps
    if block < 1 or block & (block - 1):
        raise ValueError(f"{kernel}: the output rows per program must be a power of two, got {block}")
    if dot and block < 16:
        raise ValueError(f"{kernel}: dot=True needs at least 16 output rows per program (tl.dot's smallest tile), "
                         f"got {block}; pass dot=False for smaller blocks")
    block_b = BLOCK_B if dot else triton.next_power_of_2(b)
    return block, _bk(k, block_k), _launch(num_warps), bool(dot), block_b


def _pdl(pdl: bool, x: Tensor, launch: dict) -> dict:
    """``launch`` with the ``PDL`` constexpr and, when on, ``launch_pdl=True`` (see
    :func:`decoding.nn.decode_attention.pdl_launch`: never under the interpreter)."""
    on, extra = pdl_launch(pdl, x.device)
    return {**launch, "PDL": on, **extra}


def _upcast(w: Tensor) -> bool:
    """Multiply in float32: under the interpreter (its ``tl.dot`` gives garbage for bf16 / fp16
    operands, Triton 3.6) for half-precision weights; products of half-precision numbers are exact
    in float32, so this changes nothing but the speed. Never on CUDA (tensor cores take bf16)."""
    return w.device.type != "cuda" and w.dtype != torch.float32


def norm_qkv_rotary_cache(
    x: Tensor, norm_weight: Tensor, qkv_weight: Tensor, cos: Tensor, sin: Tensor, positions: Tensor,
    kv: Tensor, slot: Tensor, n_heads: int, eps: float, block_r: int | None = None, block_k: int | None = None,
    num_warps: int | None = None, dot: bool | None = None, pdl: bool = False,
) -> Tensor:
    """RMSNorm, ``[q; k; v]`` projection, rotary on q and k, and the cache write of k and v.

    Args:
        x: ``(B, dim)`` residual stream (``B <= 8``), in the weights' dtype.
        norm_weight: ``(dim,)`` RMSNorm weight; eps: its epsilon.
        qkv_weight: ``((H + 2 Hkv) D, dim)``: the query heads' rows, then keys', then values'.
        cos, sin: ``(max_len, D / 2)`` rotary tables (half-split convention, as
            :func:`decoding.nn.transformer.apply_rotary`), float32 or the model's dtype (as
            ``Transformer.to(dtype)`` leaves them); the rotation is computed in float32.
        positions: ``(B,)`` long, each row's rotary position (a device tensor: no host sync).
        kv: ``(2, B, Hkv, S, D)`` the layer's cache (keys, then values), written in place at ``slot``.
        slot: ``(1,)`` long device tensor, the cache slot of this step's token.
        n_heads: ``H``, the number of query heads.
        block_r: rows of a head half per program (a power of two; at least 16 with ``dot``);
            block_k: inputs per step of the product loop (a power of two >= 16); num_warps: Triton's
            launch option; dot: multiply with ``tl.dot`` (the batch padded to 16) or on CUDA cores
            (see ``_rows_dot``). The knobs ``benchmarks/fused_decode_tune.py`` sweeps; those not
            given come from :func:`launch_config` (measured, or the untuned defaults).
        pdl: programmatic dependent launch (:func:`decoding.nn.decode_attention.pdl_launch`: the
            kernel's programs may start while the previous kernel finishes, and wait for it before
            any load or store; CUDA on Hopper or later; ignored on the CPU).

    Returns:
        ``q`` ``(B, Hkv, G, D)`` rotated, in the weights' dtype (``G = H / Hkv`` query heads per
        key/value head, the layout decode attention reads).
    """
    _check("norm_qkv_rotary_cache", x, qkv_weight)
    b, k = x.shape
    _, cb, hkv, _, d = kv.shape
    if kv.shape[0] != 2 or cb != b or kv.stride(-1) != 1:
        raise ValueError(f"kv must be the (2, B={b}, Hkv, S, D) cache, last dimension contiguous; got {tuple(kv.shape)}")
    if qkv_weight.shape != ((n_heads + 2 * hkv) * d, k) or norm_weight.shape != (k,):
        raise ValueError(f"qkv_weight must be ((H + 2 Hkv) D, dim) = {((n_heads + 2 * hkv) * d, k)}, norm_weight "
                         f"({k},); got {tuple(qkv_weight.shape)} and {tuple(norm_weight.shape)}")
    if cos.shape[-1] != d // 2 or cos.stride() != sin.stride() or cos.stride(-1) != 1 or positions.shape != (b,):
        raise ValueError("cos, sin must be (max_len, D / 2) tables of one layout and positions (B,)")
    q = torch.empty(b, hkv, n_heads // hkv, d, device=x.device, dtype=qkv_weight.dtype)
    positions = positions.contiguous()
    block_r, bk, launch, dot, block_b = _resolve("norm_qkv_rotary_cache", b, k, qkv_weight.shape[0], block_r,
                                                 block_k, num_warps, dot)
    grid = (n_heads + 2 * hkv, triton.cdiv(d // 2, block_r))
    _kernel("norm_qkv_rope", x.device)[grid](
        x, norm_weight, qkv_weight, cos, sin, positions, slot, q, kv,
        b, x.stride(0), qkv_weight.stride(0), cos.stride(0), q.stride(0),
        kv.stride(0), kv.stride(1), kv.stride(2), kv.stride(3),
        K=k, HQ=n_heads, HKV=hkv, D=d, EPS=float(eps),
        BLOCK_B=block_b, BLOCK_R=block_r, BLOCK_K=bk, UPCAST=_upcast(qkv_weight), DOT=dot, **_pdl(pdl, x, launch),
    )
    return q


def gemv_residual(a: Tensor, weight: Tensor, residual: Tensor, block_n: int | None = None,
                  block_k: int | None = None, num_warps: int | None = None, dot: bool | None = None,
                  pdl: bool = False) -> Tensor:
    """``residual + a @ weight^T`` for a few rows: ``a`` ``(B, K)``, ``weight`` ``(N, K)``,
    ``residual`` ``(B, N)`` -> ``(B, N)`` in the weights' dtype (the product rounded to it first,
    as ``x + linear(a)`` rounds). ``block_n`` output rows per program; ``block_k``, ``num_warps``,
    ``dot``, ``pdl`` and the defaults as :func:`norm_qkv_rotary_cache`'s."""
    _check("gemv_residual", a, weight, residual)
    b, k = a.shape
    n = weight.shape[0]
    if weight.shape[1] != k or residual.shape != (b, n):
        raise ValueError(f"gemv_residual: a (B, K), weight (N, K), residual (B, N); got a{tuple(a.shape)} "
                         f"weight{tuple(weight.shape)} residual{tuple(residual.shape)}")
    out = torch.empty(b, n, device=a.device, dtype=weight.dtype)
    block_n, bk, launch, dot, block_b = _resolve("gemv_residual", b, k, n, block_n, block_k, num_warps, dot)
    _kernel("gemv_residual", a.device)[(triton.cdiv(n, block_n),)](
        a, weight, residual, out,
        b, n, a.stride(0), weight.stride(0), residual.stride(0), out.stride(0),
        K=k, BLOCK_B=block_b, BLOCK_N=block_n, BLOCK_K=bk, UPCAST=_upcast(weight), DOT=dot, **_pdl(pdl, a, launch),
    )
    return out


def combine_gemv_residual(out: Tensor, lse: Tensor, weight: Tensor, residual: Tensor, block_n: int | None = None,
                          block_k: int | None = None, num_warps: int | None = None, dot: bool | None = None,
                          pdl: bool = False) -> Tensor:
    """``residual + a @ weight^T`` where ``a`` is the attention output combined from its key chunks.

    Args:
        out, lse: ``(B, Hkv, C, G, D)`` and ``(B, Hkv, C, G)`` float32, the per-chunk results of
            :func:`decoding.nn.decode_attention.decode_attention_partials`; combined as
            :func:`~decoding.nn.decode_attention.combine_splits` does, then rounded to the weights'
            dtype, into ``a`` ``(B, H D)`` (query head ``h G + g``), in the kernel's prologue.
        weight: ``(N, H D)`` the output projection; residual: ``(B, N)``.
        block_n, block_k, num_warps, dot, pdl: as :func:`gemv_residual`'s.

    Returns:
        ``(B, N)`` in the weights' dtype: the same as ``gemv_residual(decode_attention(...))``, one
        kernel instead of the combine's and the product's.
    """
    _check("combine_gemv_residual", residual, weight)
    if out.dim() != 5 or lse.shape != out.shape[:4] or out.stride(-1) != 1:
        raise ValueError(f"combine_gemv_residual: out (B, Hkv, C, G, D) (last dimension contiguous), lse (B, Hkv, C, G);"
                         f" got out{tuple(out.shape)} lse{tuple(lse.shape)}")
    b, hkv, c, g, d = out.shape
    n = weight.shape[0]
    if weight.shape[1] != hkv * g * d or residual.shape != (b, n):
        raise ValueError(f"combine_gemv_residual: weight (N, H D = {hkv * g * d}), residual (B = {b}, N); got "
                         f"weight{tuple(weight.shape)} residual{tuple(residual.shape)}")
    y = torch.empty(b, n, device=out.device, dtype=weight.dtype)
    k = hkv * g * d
    block_n, bk, launch, dot, block_b = _resolve("combine_gemv_residual", b, k, n, block_n, block_k, num_warps, dot)
    _kernel("combine_gemv_residual", out.device)[(triton.cdiv(n, block_n),)](
        out, lse, weight, residual, y,
        b, n, out.stride(0), out.stride(1), out.stride(2), out.stride(3), lse.stride(0), lse.stride(1), lse.stride(2),
        weight.stride(0), residual.stride(0), y.stride(0),
        K=k, G=g, D=d, C=c, C_PAD=max(2, triton.next_power_of_2(c)), BLOCK_B=block_b, BLOCK_N=block_n,
        BLOCK_K=bk, UPCAST=_upcast(weight), DOT=dot, **_pdl(pdl, out, launch),
    )
    return y


def norm_gate_up_silu(x: Tensor, norm_weight: Tensor, gate_up_weight: Tensor, eps: float, block_n: int | None = None,
                      block_k: int | None = None, num_warps: int | None = None, dot: bool | None = None,
                      pdl: bool = False) -> Tensor:
    """RMSNorm, the ``[gate; up]`` product and ``silu(gate) * up``.

    Args:
        x: ``(B, dim)`` residual stream (``B <= 8``); norm_weight ``(dim,)``; eps: the norm's epsilon.
        gate_up_weight: ``(2 hidden, dim)``, gate's rows then up's.
        block_n, block_k, num_warps, dot, pdl: as :func:`gemv_residual`'s (``block_n`` rows of gate and of up).

    Returns:
        ``(B, hidden)`` in the weights' dtype, the input of the down projection.
    """
    _check("norm_gate_up_silu", x, gate_up_weight)
    b, k = x.shape
    two_hidden = gate_up_weight.shape[0]
    if gate_up_weight.shape[1] != k or two_hidden % 2 or norm_weight.shape != (k,):
        raise ValueError(f"norm_gate_up_silu: x (B, dim), gate_up_weight (2 hidden, dim), norm_weight (dim,); got "
                         f"x{tuple(x.shape)} weight{tuple(gate_up_weight.shape)} norm{tuple(norm_weight.shape)}")
    hidden = two_hidden // 2
    out = torch.empty(b, hidden, device=x.device, dtype=gate_up_weight.dtype)
    block_n, bk, launch, dot, block_b = _resolve("norm_gate_up_silu", b, k, two_hidden, block_n, block_k, num_warps,
                                                 dot)
    _kernel("norm_gate_up", x.device)[(triton.cdiv(hidden, block_n),)](
        x, norm_weight, gate_up_weight, out,
        b, hidden, x.stride(0), gate_up_weight.stride(0), out.stride(0),
        K=k, EPS=float(eps), BLOCK_B=block_b, BLOCK_N=block_n, BLOCK_K=bk,
        UPCAST=_upcast(gate_up_weight), DOT=dot, **_pdl(pdl, x, launch),
    )
    return out
