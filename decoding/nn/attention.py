"""One attention function for every model in the engine, with three backends.

- ``xformers``: ``xformers.ops.memory_efficient_attention`` (CUDA), with its causal and
  block-diagonal (ragged batch) masks;
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``;
- ``naive``: softmax(QK^T / sqrt(d)) V in float32, the reference the others are tested against;
- ``triton``: our split-K decode kernel (:mod:`decoding.nn.decode_attention`) for calls whose mask
  is one ``(B, 1, 1, Lk)`` key mask shared by every query (a decode step over a KV cache); other
  calls (a prefill's causal mask, ragged batches) run on SDPA. Never chosen automatically.
- ``flex``: PyTorch's FlexAttention for the same decode calls (:mod:`decoding.nn.flex_decode`; inductor
  generates its kernel under ``torch.compile``); other calls run on SDPA. Never chosen automatically.

The backend is chosen per call: the ``backend`` argument, else the environment variable
``DECODING_ATTENTION``, else xformers on CUDA when it is installed and SDPA otherwise.
Models never call a kernel directly.

Shapes (``layout="bhld"``, the default): q ``(B, H, Lq, D)``, k and v ``(B, Hkv, Lk, D)`` with
``H % Hkv == 0`` (grouped-query attention); the output is ``(B, H, Lq, D)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("xformers", "sdpa", "naive", "triton", "flex")
KEY_MASK_BACKENDS = ("triton", "flex")  # decode kernels: one (B, 1, 1, Lk) key mask a row, shared by every query


_XFORMERS: list[bool] = []  # the answer, once known


@torch.compiler.assume_constant_result
def xformers_available() -> bool:
    """True when ``xformers.ops`` imports (it is an optional extra: ``pip install decoding-engine[gpu]``).

    Inside ``torch.compile`` the answer is a constant of the trace: tracing the import (as Dynamo
    does through an ``lru_cache``) broke the compiled CUDA decode step into one graph per layer
    (first H100 run, 2026-12-07).
    """
    if not _XFORMERS:
        try:
            import xformers.ops  # noqa: F401
        except Exception:
            _XFORMERS.append(False)
        else:
            _XFORMERS.append(True)
    return _XFORMERS[0]


def choose_backend(device: torch.device, backend: str | None = None) -> str:
    """Resolve ``backend`` (argument > ``DECODING_ATTENTION`` > automatic) for tensors on ``device``."""
    name = backend or os.environ.get("DECODING_ATTENTION") or "auto"
    name = name.lower()
    if name == "auto":
        return "xformers" if device.type == "cuda" and xformers_available() else "sdpa"
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)} or 'auto'")
    if name == "triton":
        from decoding.nn.decode_attention import interpreting, triton_available

        if not triton_available():
            raise ValueError("the triton backend needs triton: pip install triton, or use backend='sdpa'")
        if device.type != "cuda" and not interpreting():
            raise ValueError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 on CPU); use backend='sdpa'")
    if name == "flex":
        from decoding.nn.flex_decode import flex_available

        if not flex_available():
            raise ValueError("the flex backend needs torch.nn.attention.flex_attention (torch 2.5+); use backend='sdpa'")
    if name == "xformers":
        if device.type != "cuda":
            raise ValueError("the xformers backend needs CUDA tensors; use backend='sdpa' on CPU")
        if not xformers_available():
            raise ValueError("xformers is not installed: pip install 'decoding-engine[gpu]', or use backend='sdpa'")
    return name


def _dense_mask(
    lq: int,
    lk: int,
    device: torch.device,
    causal: bool,
    seq_lens_q: Sequence[int] | None,
    seq_lens_k: Sequence[int] | None,
) -> Tensor | None:
    """Bool ``(Lq, Lk)`` mask (True = attend). Causal masks align to the bottom-right corner."""
    mask = None
    if seq_lens_q is not None:
        kq = seq_lens_k if seq_lens_k is not None else seq_lens_q
        sq = torch.repeat_interleave(torch.arange(len(seq_lens_q), device=device), torch.tensor(list(seq_lens_q), device=device))
        sk = torch.repeat_interleave(torch.arange(len(kq), device=device), torch.tensor(list(kq), device=device))
        mask = sq[:, None] == sk[None, :]
        if causal:  # causal within each block, bottom-right aligned per block
            oq = torch.cat([torch.arange(n, device=device) + (m - n) for n, m in zip(seq_lens_q, kq, strict=True)])
            ok = torch.cat([torch.arange(m, device=device) for m in kq])
            mask = mask & (ok[None, :] <= oq[:, None])
        return mask
    if causal:
        qpos = torch.arange(lq, device=device) + (lk - lq)
        mask = torch.arange(lk, device=device)[None, :] <= qpos[:, None]
    return mask


def _combine(dense: Tensor | None, mask: Tensor | None) -> Tensor | None:
    """Merge a bool structural mask with a user mask (bool: True = attend, or additive float)."""
    if mask is None:
        return dense
    if dense is None:
        return mask
    if mask.dtype == torch.bool:
        return mask & dense
    return mask.masked_fill(~dense, float("-inf"))


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    mask: Tensor | None = None,
    seq_lens_q: Sequence[int] | None = None,
    seq_lens_k: Sequence[int] | None = None,
    scale: float | None = None,
    backend: str | None = None,
) -> Tensor:
    """Scaled dot-product attention.

    Args:
        q: ``(B, H, Lq, D)``.
        k, v: ``(B, Hkv, Lk, D)``; ``H`` must be a multiple of ``Hkv``.
        causal: query ``i`` sees keys ``<= i + (Lk - Lq)`` (bottom-right aligned, as in a KV-cache step).
        mask: optional, broadcastable to ``(B, H, Lq, Lk)``: bool (True = attend) or additive float.
        seq_lens_q, seq_lens_k: ragged batch packed along the sequence axis (``B == 1``): a
            block-diagonal mask; with ``causal`` each block is causal on its own.
        scale: softmax scale, default ``1 / sqrt(D)``.
        backend: ``"xformers"``, ``"sdpa"``, ``"naive"``, ``"triton"``, ``"flex"`` or None (automatic; see module docs).

    Returns:
        ``(B, H, Lq, D)`` in the dtype of ``q``.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention expects 4-d (B, H, L, D) tensors, got q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    b, h, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    if h % hkv != 0:
        raise ValueError(f"query heads ({h}) must be a multiple of key/value heads ({hkv})")
    if seq_lens_q is not None:
        if b != 1:
            raise ValueError("a ragged batch (seq_lens_q) is packed along the sequence axis: batch size must be 1")
        if sum(seq_lens_q) != lq or sum(seq_lens_k if seq_lens_k is not None else seq_lens_q) != lk:
            raise ValueError("seq_lens_q / seq_lens_k must sum to the packed query / key lengths")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    name = choose_backend(q.device, backend)
    if name in KEY_MASK_BACKENDS:
        if not causal and seq_lens_q is None and _key_mask(mask, b, lk):
            from decoding.nn.decode_attention import decode_attention
            from decoding.nn.flex_decode import flex_decode_attention

            valid = torch.ones(b, lk, dtype=torch.bool, device=q.device) if mask is None else mask.reshape(b, lk)
            grouped = q.reshape(b, hkv, (h // hkv) * lq, d)  # the query heads of one key/value head are adjacent
            kernel = decode_attention if name == "triton" else flex_decode_attention
            return kernel(grouped, k, v, valid, scale=scale).reshape(b, h, lq, d)
        name = "sdpa"
    if name == "xformers":
        return _xformers(q, k, v, causal, mask, seq_lens_q, seq_lens_k, scale)
    dense = _combine(_dense_mask(lq, lk, q.device, causal, seq_lens_q, seq_lens_k), mask)
    if hkv != h:
        k = k.repeat_interleave(h // hkv, dim=1)
        v = v.repeat_interleave(h // hkv, dim=1)
    if name == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, scale=scale)
    return naive_attention(q, k, v, dense, scale)


def _key_mask(mask: Tensor | None, b: int, lk: int) -> bool:
    """Whether ``mask`` is None or one bool key mask per row, ``(B, 1, 1, Lk)`` (what the decode kernel takes)."""
    return mask is None or (mask.dtype == torch.bool and tuple(mask.shape) == (b, 1, 1, lk))


def naive_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """Reference attention in float32; rows with no visible key return zeros."""
    s = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.float()
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return torch.einsum("bhqk,bhkd->bhqd", p, v.float()).to(q.dtype)


def _xformers(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool,
    mask: Tensor | None,
    seq_lens_q: Sequence[int] | None,
    seq_lens_k: Sequence[int] | None,
    scale: float,
) -> Tensor:
    import xformers.ops as xops
    from xformers.ops import fmha

    b, h, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    # xformers wants (B, L, H, D); grouped-query attention as (B, L, G, H/G, D).
    qx, kx, vx = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if hkv != h:
        g = h // hkv
        qx = qx.reshape(b, lq, hkv, g, d)
        kx = kx[:, :, :, None, :].expand(b, lk, hkv, g, d)
        vx = vx[:, :, :, None, :].expand(b, lk, hkv, g, d)
    bias: object = None
    if seq_lens_q is not None:
        kl = list(seq_lens_k if seq_lens_k is not None else seq_lens_q)
        cls = fmha.attn_bias.BlockDiagonalCausalFromBottomRightMask if causal else fmha.attn_bias.BlockDiagonalMask
        bias = cls.from_seqlens(list(seq_lens_q), kl)
        if mask is not None:
            raise ValueError("combine a ragged batch with an explicit mask on the sdpa backend")
    elif mask is not None:
        dense = _combine(_dense_mask(lq, lk, q.device, causal, None, None), mask)
        add = torch.zeros(dense.shape, dtype=q.dtype, device=q.device).masked_fill(~dense, float("-inf")) if dense.dtype == torch.bool else dense.to(q.dtype)
        # xformers needs the last dim of a tensor bias padded to a multiple of 8 (then sliced).
        pad = (-lk) % 8
        full = torch.zeros((*add.shape[:-1], lk + pad), dtype=q.dtype, device=q.device)
        full[..., :lk] = add
        add = full[..., :lk].expand(b, h, lq, lk)
        if hkv != h:
            add = add.reshape(b, hkv, h // hkv, lq, lk)
        bias = add
    elif causal:
        bias = fmha.attn_bias.LowerTriangularFromBottomRightMask() if lq != lk else fmha.attn_bias.LowerTriangularMask()
    out = xops.memory_efficient_attention(qx, kx, vx, attn_bias=bias, scale=scale)
    return out.reshape(b, lq, h, d).transpose(1, 2)
