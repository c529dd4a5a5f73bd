"""Split-K attention for a few queries over a long KV cache ("flash-decoding"), in Triton.

A decode step has one query per head (``G`` queries per key/value head under grouped-query
attention) against ``S`` cached keys: too little work per head for one thread block, so the keys
are split into ``splits`` chunks processed in parallel (Dao et al., flash-decoding; the online
softmax of FlashAttention, arXiv 2205.14135). Each program handles one (row, key/value head,
chunk): it streams its keys in blocks, keeps the running maximum, normaliser and weighted sum of
values for its ``G`` queries, and writes the chunk's normalised output and log-sum-exp. A second
step combines the chunks with weights ``softmax(lse)`` over chunks.

Masking is per key slot (``valid (B, S)``, the static cache's "slot holds a real token"), the
same for every query of a row, which is what a one-token decode step needs. A row with no valid
slot returns zeros (like the naive reference). Keys and values are read in their dtype (bf16
halves the bytes of a memory-bound step) and all arithmetic is float32 (``input_precision="ieee"``:
no TF32 rounding), so the kernel matches the float32 reference. Runs on CUDA; with ``TRITON_INTERPRET=1`` the same
kernel runs on CPU tensors (that is how the tests check it against the reference).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # an optional extra: the kernel needs it, nothing else does
    triton = None
    tl = None


TARGET_PROGRAMS = 512


def triton_available() -> bool:
    return triton is not None


def interpreting() -> bool:
    """Triton's interpreter runs kernels on CPU tensors (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _split_kernel(  # jitted below (_JIT, _kernel)
    q_ptr, k_ptr, v_ptr, valid_ptr, o_ptr, lse_ptr,
    S, G, D, scale,
    sq_b, sq_h, sq_g,
    sk_b, sk_h, sk_s,
    sv_b, sv_h, sv_s,
    sm_b,
    so_b, so_h, so_c, so_g,
    sl_b, sl_h, sl_c,
    HKV: tl.constexpr, CHUNK: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT: tl.constexpr, PDL: tl.constexpr, MMA: tl.constexpr = False, UPCAST: tl.constexpr = False,
):
    if PDL:  # programmatic dependent launch: no memory access before the previous kernel has finished
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    bh = tl.program_id(0)
    c = tl.program_id(1)
    b = bh // HKV
    h = bh % HKV
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    gm = g < G
    dm = d < D
    q = tl.load(q_ptr + b * sq_b + h * sq_h + g[:, None] * sq_g + d[None, :], mask=gm[:, None] & dm[None, :], other=0.0)
    if not MMA:
        q = q.to(tl.float32)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    start = c * CHUNK
    # constant loop bounds: Triton 3.6's interpreter cannot range() over a runtime scalar with NumPy >= 2.4
    # (its scalars are 1-element arrays, and int() of those is an error there). A session's compiled or
    # graphed step has one cache length, so one CHUNK; an eager step over a growing prefix (``upto``)
    # compiles one variant per chunk length it meets (chunks are whole blocks of BLOCK_N keys)
    for off in range(0, CHUNK, BLOCK_N):
        s_idx = start + off + n
        sm = s_idx < S
        ok = tl.load(valid_ptr + b * sm_b + s_idx, mask=sm, other=0) != 0
        kv_mask = (sm & ok)[:, None] & dm[None, :]
        k = tl.load(k_ptr + b * sk_b + h * sk_h + s_idx[:, None] * sk_s + d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + b * sv_b + h * sv_h + s_idx[:, None] * sv_s + d[None, :], mask=kv_mask, other=0.0)
        if not MMA:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        # (BLOCK_G, BLOCK_N); inductor passes a Python float as fp64 (torch 2.11+), so cast back: the
        # fp64 product would reach the second tl.dot and fail to compile (operands of one dtype)
        if MMA and UPCAST:  # the interpreter's tl.dot cannot multiply bf16 / fp16 (exact in fp32 all the same)
            s = (tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32))) * scale).to(tl.float32)
        elif MMA:  # tensor cores on the cache's dtype (bf16 x bf16 products are exact in the float32 accumulator)
            s = (tl.dot(q, tl.trans(k), out_dtype=tl.float32) * scale).to(tl.float32)
        elif DOT:  # float32 "ieee" operands: FMAs (no mma) on BLOCK_G padded to 16 rows
            s = (tl.dot(q, tl.trans(k), input_precision="ieee") * scale).to(tl.float32)
        else:  # the G queries padded to a power of two only, float32 products summed over D
            s = (tl.sum(q[:, None, :] * k[None, :, :], 2) * scale).to(tl.float32)
        s = tl.where((sm & ok)[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no valid key yet: keep exp() finite
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        if MMA and UPCAST:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype).to(tl.float32), v.to(tl.float32))
        elif MMA:  # the probabilities rounded to the values' dtype, as FlashAttention does
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, out_dtype=tl.float32)
        elif DOT:
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], 1)
        m_i = m_new
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, m_i + tl.log(tl.where(has, l_i, 1.0)), float("-inf"))
    tl.store(o_ptr + b * so_b + h * so_h + c * so_c + g[:, None] * so_g + d[None, :], out,
             mask=gm[:, None] & dm[None, :])
    tl.store(lse_ptr + b * sl_b + h * sl_h + c * sl_c + g, lse, mask=gm)


_JIT = triton.jit(_split_kernel) if triton is not None else None  # made at import: torch.compile traces a ready kernel
_INTERPRETED: list = []


def _kernel(device: torch.device):
    """The split kernel for tensors on ``device``: compiled for CUDA, interpreted for CPU tensors
    (``TRITON_INTERPRET=1``, which must be set before triton is imported)."""
    if device.type == "cuda":
        return _JIT
    if not _INTERPRETED:
        _INTERPRETED.append(triton.jit(_split_kernel))
    return _INTERPRETED[0]


def _attention_row(b: int, s: int, features: int) -> dict | None:
    """The ``"decode_attention"`` row of :data:`decoding.nn.fused_decode.TUNED` for ``b`` rows, ``s`` cache slots and
    ``features = Hkv G D``: among the rows of this head shape, those at the smallest tuned batch ``B >= b`` with
    ``b > B / 2`` (a launch serves batches from half its own, exclusive, up to its own: one tuned for 8 rows would
    leave batch 1 with a program per key/value head), and of those the one measured at the cache length nearest
    ``s`` (the chunk stays; the number of chunks follows the cache)."""
    from decoding.nn import fused_decode

    rows = [r for r in fused_decode.TUNED if r["kernel"] == "decode_attention" and r["N"] == features]
    above = [r["batch"] for r in rows if r["batch"] >= b]
    if not above or 2 * b <= min(above):
        return None
    batch = min(above)
    return min((r for r in rows if r["batch"] == batch), key=lambda r: (abs(r["K"] - s), r["K"]))


def tuned_launch(b: int, s: int, features: int) -> dict | None:
    """The measured launch of the split kernel for ``b`` rows, ``s`` cache slots and ``features = Hkv G D``:
    ``block_n``, ``chunk`` (keys a program), ``num_warps``, ``dot`` and ``mma``, from the ``"decode_attention"``
    rows of :data:`decoding.nn.fused_decode.TUNED` (``block`` is ``block_n``, ``block_k`` the chunk; the row of
    :func:`_attention_row`); None where it has none (today's launch: 64-key blocks, about
    :data:`TARGET_PROGRAMS` programs, ``tl.dot``)."""
    row = _attention_row(b, s, features)
    if row is None:
        return None
    return {"block_n": row["block"], "chunk": row["block_k"], "num_warps": row["warps"], "dot": bool(row["dot"]),
            "mma": bool(row.get("mma", False))}


def beats_sdpa(b: int, s: int, features: int) -> bool:
    """Whether the measured launch for ``b`` rows (:func:`tuned_launch`) was timed faster than PyTorch's SDPA on
    the same work: its row names ``"peer": "sdpa"`` (``benchmarks/fused_decode_tune.py --attn-peer sdpa``) and
    its ``us`` is below ``peer_us``. :class:`decoding.adapters.static_cache.StaticCausalLM` then runs this kernel
    in its compiled one-token step at that batch instead of SDPA (where no backend was forced)."""
    row = _attention_row(b, s, features)
    return (row is not None and row.get("peer") == "sdpa" and "us" in row and "peer_us" in row
            and float(row["us"]) < float(row["peer_us"]))


def pdl_launch(pdl: bool, device: torch.device) -> tuple[bool, dict]:
    """The ``PDL`` constexpr and the extra launch options of a kernel call with ``pdl`` asked for.

    Programmatic dependent launch (Hopper and later; CUDA's ``PROGRAMMATIC_STREAM_SERIALIZATION``
    launch attribute, Triton's ``launch_pdl=True``) lets a kernel's programs start while the
    previous kernel on the stream is still finishing; each kernel built with ``PDL`` waits
    (``griddepcontrol.wait``) for its predecessor to finish before its first load or store, then
    lets its own successor launch (``griddepcontrol.launch_dependents``): what overlaps is the
    launch and scheduling of the programs, never a memory access, so no ordering of reads and
    writes changes. Off on the CPU: Triton's interpreter cannot run the inline assembly."""
    on = bool(pdl) and device.type == "cuda" and not interpreting()
    return on, ({"launch_pdl": True} if on else {})


def combine_splits(out: Tensor, lse: Tensor) -> Tensor:
    """Merge per-chunk results: ``out`` ``(B, Hkv, C, G, D)`` normalised per chunk, ``lse``
    ``(B, Hkv, C, G)`` their log-sum-exps (``-inf`` for a chunk without a valid key) ->
    ``(B, Hkv, G, D)`` float32; zeros where no chunk had a valid key. One chunk is its own result (one
    select, no reduction)."""
    if out.shape[2] == 1:
        return torch.where(torch.isneginf(lse[:, :, 0])[..., None], 0.0, out[:, :, 0])
    top = lse.amax(dim=2, keepdim=True)
    w = torch.exp(lse - torch.where(torch.isinf(top), 0.0, top))  # exp(-inf) = 0 for empty chunks
    total = w.sum(dim=2, keepdim=True)
    w = w / torch.where(total > 0, total, 1.0)
    return (w[..., None] * out).sum(dim=2)


def decode_attention(
    q: Tensor, k: Tensor, v: Tensor, valid: Tensor, scale: float | None = None, splits: int | None = None,
    block_n: int | None = None, pdl: bool = False, num_warps: int | None = None, dot: bool | None = None,
    mma: bool | None = None,
) -> Tensor:
    """Attention of ``G`` queries per key/value head over a KV cache, split over the keys.

    Args:
        q: ``(B, Hkv, G, D)``: the queries that share key/value head ``h`` (grouped-query attention).
        k, v: ``(B, Hkv, S, D)`` the cache (last dimension contiguous).
        valid: ``(B, S)`` bool, True where a slot holds a key to attend to; or int8, nonzero there
            (the kernel's own form: a caller with many layers converts the mask once).
        scale: softmax scale, default ``1 / sqrt(D)``.
        splits: key chunks processed in parallel (default: about 512 programs in all, enough
            to fill an H100's 132 SMs four times over, at most ``S / block_n``).
        block_n: keys per inner block (default 64).
        pdl: launch the split kernel with programmatic dependent launch (:func:`pdl_launch`; CUDA on
            Hopper or later; ignored on the CPU).
        num_warps: Triton's launch option (default: Triton's).
        dot: the two products with ``tl.dot`` (the default; its operands are float32 with
            ``input_precision="ieee"``, which compiles to FMAs, not tensor cores, for sm_90, on the
            ``G`` queries padded to 16 rows) or as broadcast products summed with ``tl.sum``
            (``False``: ``G`` padded to a power of two >= 2 only); both multiply and sum in float32.
        mma: the two products on tensor cores in the cache's dtype (bfloat16 or float16 on CUDA): the
            query is rounded to that dtype (it already is in a half-precision model), the scores accumulate
            in float32, and the probabilities are rounded to the values' dtype before the second product,
            as FlashAttention does (so the result is within half-precision rounding of the float32
            reference, not equal to it); the ``G`` queries are padded to 16 rows. Default False.
        ``splits``, ``block_n``, ``num_warps``, ``dot`` and ``mma`` left at None come from the measured
        table (:func:`tuned_launch`: the ``"decode_attention"`` rows of
        :data:`decoding.nn.fused_decode.TUNED`, keyed by ``S`` and ``Hkv G D``), or are the
        defaults above where it has no entry.

    Returns:
        ``(B, Hkv, G, D)`` in ``q``'s dtype; rows without a valid slot are zeros.
    """
    out, lse = decode_attention_partials(q, k, v, valid, scale=scale, splits=splits, block_n=block_n, pdl=pdl,
                                         num_warps=num_warps, dot=dot, mma=mma)
    return combine_splits(out, lse).to(q.dtype)


def decode_attention_partials(
    q: Tensor, k: Tensor, v: Tensor, valid: Tensor, scale: float | None = None, splits: int | None = None,
    block_n: int | None = None, pdl: bool = False, num_warps: int | None = None, dot: bool | None = None,
    mma: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """The split kernel of :func:`decode_attention` alone: per key chunk, before the combine.

    Same arguments as :func:`decode_attention`. Returns ``out`` ``(B, Hkv, C, G, D)`` float32, each
    chunk's normalised output, and ``lse`` ``(B, Hkv, C, G)`` float32, their log-sum-exps (``-inf``
    for a chunk without a valid key), for :func:`combine_splits` or a consumer that combines them
    itself (:func:`decoding.nn.fused_decode.combine_gemv_residual`).
    """
    if triton is None:
        raise RuntimeError("decode_attention needs triton: pip install triton (CUDA), or use another backend")
    if q.device.type != "cuda" and not interpreting():
        raise ValueError(f"decode_attention runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1), got {q.device}")
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4 or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"decode_attention expects q (B, Hkv, G, D) and k, v (B, Hkv, S, D); got "
                         f"q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    b, hkv, g, d = q.shape
    s = k.shape[2]
    if valid.shape != (b, s) or valid.dtype not in (torch.bool, torch.int8):
        raise ValueError(f"valid must be a (B, S) = {(b, s)} bool (or int8) mask, got {tuple(valid.shape)} {valid.dtype}")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("decode_attention needs the last dimension of q, k and v contiguous")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    tuned = tuned_launch(b, s, hkv * g * d)
    if tuned is not None:  # the measured launch for this cache length and head shape; what the caller gave wins
        block_n = tuned["block_n"] if block_n is None else block_n
        num_warps = tuned["num_warps"] if num_warps is None else num_warps
        dot = tuned["dot"] if dot is None else dot
        if mma is None:  # a launch measured on a half-precision cache; a float32 cache keeps float32 products
            mma = tuned["mma"] and k.dtype in (torch.bfloat16, torch.float16)
        if splits is None:
            splits = triton.cdiv(s, max(tuned["chunk"], block_n))
    block_n = 64 if block_n is None else int(block_n)
    dot = True if dot is None else bool(dot)
    mma = bool(mma)
    if mma:
        if q.device.type == "cuda" and k.dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"mma=True multiplies in the cache's half-precision dtype; got a {k.dtype} cache "
                             "(use mma=False for float32)")
        q = q.to(k.dtype)
        dot = True
    if block_n < 16 or block_n & (block_n - 1):
        raise ValueError(f"block_n must be a power of two >= 16, got {block_n}")
    if splits is None:  # from the shapes only (no device query: the call may be traced by torch.compile)
        splits = max(1, min(triton.cdiv(s, block_n), triton.cdiv(TARGET_PROGRAMS, b * hkv)))
    chunk = triton.cdiv(triton.cdiv(s, splits), block_n) * block_n  # whole blocks per chunk
    splits = triton.cdiv(s, chunk)
    out = torch.empty(b, hkv, splits, g, d, device=q.device, dtype=torch.float32)
    lse = torch.empty(b, hkv, splits, g, device=q.device, dtype=torch.float32)
    mask = valid if valid.dtype == torch.int8 else valid.to(torch.int8)
    block_g = max(16, triton.next_power_of_2(g)) if dot else max(2, triton.next_power_of_2(g))  # tl.dot: 16 rows
    block_d = max(16, triton.next_power_of_2(d))
    on, launch = pdl_launch(pdl, q.device)
    if num_warps is not None:
        launch["num_warps"] = int(num_warps)
    _kernel(q.device)[(b * hkv, splits)](
        q, k, v, mask, out, lse,
        s, g, d, scale,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        mask.stride(0),
        out.stride(0), out.stride(1), out.stride(2), out.stride(3),
        lse.stride(0), lse.stride(1), lse.stride(2),
        HKV=hkv, CHUNK=chunk, BLOCK_G=block_g, BLOCK_N=block_n, BLOCK_D=block_d, DOT=dot, PDL=on, MMA=mma,
        UPCAST=mma and interpreting(), **launch,
    )
    return out, lse
