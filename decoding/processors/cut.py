"""Sort-free exact cuts for the truncation processors (top-p, typical): a threshold search on the keys.

Top-p (arXiv 1904.09751) and locally typical sampling (arXiv 2202.00666) are usually written as
"sort the vocabulary, take a cumulative sum, cut where it crosses a mass". The cut only needs one
number per row, the *key* (logit for top-p, typicality gap for typical) of the tie group where the
cumulative mass crosses, plus, when that group is cut in the middle, how many of its members fall
on each side. This module finds that key by a most-significant-bit-first search over the 32-bit
order-preserving integer image of the float32 keys: pass ``j`` fixes ``bits`` more bits of the
answer by comparing the masses below ``2^bits - 1`` candidate thresholds (``32 / bits`` passes in
all, each a masked sum over the vocabulary). Static shapes, no host synchronisation: it can be
captured in a CUDA graph or compiled with ``torch.compile(fullgraph=True)``.

Masses are summed in 62-bit fixed point (``int64``): integer sums are exact and independent of the
summation order, so the search is deterministic on every device and the cut is the exact one for
the float32 probabilities. The sorted references (transformers' warpers) cut on a float32 running
sum instead; the two agree except when the true cumulative mass lies within that sum's rounding
error (about ``V * 6e-8``) of the threshold.

Ties: a sorted reference cuts a tie group wherever its sort put the group's members; ``torch.sort``
is not stable by default, so which tied ids survive is an accident of the device and the torch
version (the number that survives is not). Here the order among equal keys is the index order,
i.e. the order of ``torch.sort(..., stable=True)``: the kept set equals a stable-sort reference
exactly, and an unstable one up to which equally likely tied ids fill the same count.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import torch
from torch import Tensor

FIXED_ONE = 2.0**62  # 1.0 in the fixed point of the masses (sums of <= 1 stay below 2^63)
KEY_BITS = 32
SEARCH_BITS = 1  # bits per pass: 32 passes of one masked sum (fewest bytes in eager; see docs/perf/gpu_speed.md)


def order_keys(x: Tensor) -> Tensor:
    """``(..., V)`` floats -> ``int64`` keys in ``[0, 2^32)`` with ``a < b`` iff ``key(a) < key(b)``.

    Equal floats get equal keys (``-0.0`` and ``+0.0`` included); ``-inf`` and ``+inf`` are ordered
    as floats; bfloat16 and float16 are widened to float32 exactly first.
    """
    bits = (x.float() + 0.0).view(torch.int32).long()  # + 0.0 turns -0.0 into +0.0
    return torch.where(bits >= 0, bits + 2**31, -1 - bits)


def fixed_point(p: Tensor) -> Tensor:
    """Probabilities ``(..., V)`` in [0, 1] -> ``int64`` multiples of ``2^-62``, rounded up.

    Exact for ``p >= 2^-38`` (float32 has 24 significant bits); smaller ones round up, so exactly
    the tokens with ``p = 0`` weigh 0 (a sum over ``V`` tokens is off by at most ``V * 2^-62``).
    """
    return torch.ceil(p.float() * FIXED_ONE).long()


def fixed_scalar(value: float) -> int:
    """A mass threshold as the references compare it (rounded to float32), in the same fixed point."""
    as_float32 = struct.unpack("f", struct.pack("f", float(value)))[0]  # plain Python: no tensor, no graph break
    return int(as_float32 * FIXED_ONE)


def largest_below(keys: Tensor, mass: Tensor, accept: Callable[[Tensor], Tensor], bits: int = SEARCH_BITS,
                  key_bits: int = KEY_BITS) -> Tensor:
    """The largest ``s`` in ``[0, 2^key_bits)`` with ``accept(mass of keys < s)``, per row.

    Args:
        keys: ``(B, V)`` (or ``(1, V)``, the same keys for every row) int64 in ``[0, 2^key_bits)``
            (:func:`order_keys`).
        mass: ``(B, V)`` int64 weights (:func:`fixed_point`, or counts).
        accept: ``(B, R) int64 masses -> (B, R) bool``, true for small masses and monotone
            (once false, false for every larger mass); ``accept(0)`` must hold.
        bits: answer bits fixed per pass (1, 2, 4, 8 or 16): ``key_bits / bits`` passes over the
            vocabulary (rounded up), each comparing ``2^bits - 1`` candidates.
        key_bits: width of the keys (32 for :func:`order_keys`).

    Returns:
        ``(B, 1)`` int64. Since the mass below ``s`` only changes at key values, the answer is the
        key of the first tie group whose inclusion makes ``accept`` false (``2^key_bits - 1`` when
        every mass is accepted).
    """
    if bits not in (1, 2, 4, 8, 16):
        raise ValueError(f"bits per pass must be 1, 2, 4, 8 or 16, got {bits}")
    key_bits = -(-key_bits // bits) * bits  # whole passes
    s = torch.zeros(mass.shape[0], 1, dtype=torch.long, device=mass.device)
    if bits == 1:  # plain bisection, the fewest kernels per pass
        for shift in range(key_bits - 1, -1, -1):
            cand = s + (1 << shift)
            s = torch.where(accept(torch.where(keys < cand, mass, 0).sum(-1, keepdim=True)), cand, s)
        return s
    digits = torch.arange(1, 2**bits, device=mass.device, dtype=torch.long)  # (R,)
    for shift in range(key_bits - bits, -1, -bits):
        cand = s + (digits << shift)  # (B, R): s has zeros in the bits of this pass
        below = torch.where(keys[:, :, None] < cand[:, None, :], mass[:, :, None], 0).sum(1)
        s = s + (accept(below).long().sum(-1, keepdim=True) << shift)  # monotone: #accepted = best digit
    return s


def first_in_index_order(members: Tensor, count: Tensor, bits: int = SEARCH_BITS) -> Tensor:
    """``(B, V)`` bool, ``(B, 1)`` int64 ``count >= 0`` -> the first ``count`` True entries of each
    row in index order (all of them when there are fewer).

    No scan: a cumulative sum over ``V`` went through inductor's split scan, whose codegen failed
    for ``int64`` at batch 8 on CUDA (torch 2.11, 2026-12-07). The cut index is found by the same
    bisection as the keys, over ``ceil(log2 V)`` index bits: the largest ``t`` with at most
    ``count`` members below it is the index of member ``count + 1``.
    """
    v = members.shape[-1]
    index = torch.arange(v, device=members.device, dtype=torch.long)[None, :]
    t = largest_below(index, members.long(), lambda below: below <= count, bits, key_bits=max(1, v.bit_length()))
    return members & (index < t)


def first_m(keys: Tensor, m: int, largest: bool) -> Tensor:
    """``(B, V)`` keys -> bool mask of the ``m`` first tokens in the stable order by key.

    ``largest=True``: the ``m`` largest keys, among equal keys the highest indices (the last ``m``
    of an ascending stable sort); ``largest=False``: the ``m`` smallest, lowest indices first.
    """
    v = keys.shape[-1]
    m = min(m, v)
    kth = torch.topk(keys, m, dim=-1, largest=largest).values[..., -1:]  # values are well defined
    strictly = keys > kth if largest else keys < kth
    room = m - strictly.sum(-1, keepdim=True)  # in [1, m]
    tie = keys == kth
    # the ``room`` tied tokens that come first (largest: the highest indices): a top-m of a score
    # that is positive and distinct on the tie, 0 elsewhere; no scan over the vocabulary
    index = torch.arange(v, device=keys.device, dtype=torch.long)
    score = torch.where(tie, index + 1 if largest else v - index, 0)
    top = torch.topk(score, m, dim=-1).values  # (B, m) descending
    threshold = top.gather(-1, (room - 1).clamp(0, m - 1))
    return strictly | tie & (score >= threshold)


def check_method(method: str, kernel: bool = False) -> None:
    """``method`` of a truncation processor: ``"auto"``, ``"search"`` (this module) or ``"sort"`` (the
    sorted reference); with ``kernel`` (top-p) also ``"kernel"`` (:mod:`decoding.processors.cut_kernel`)."""
    methods = ("auto", "search", "sort") + (("kernel",) if kernel else ())
    if method not in methods:
        kernel_text = ", 'kernel' (the search in Triton kernels)" if kernel else ""
        raise ValueError(f"method must be 'auto', 'search' (sort-free threshold search){kernel_text} or 'sort' "
                         f"(full sort), got {method!r}")


def use_search(method: str, device: torch.device | str | None = None) -> bool:
    """Whether a processor with ``method`` takes the sort-free path now, for logits on ``device``.

    ``"auto"`` sorts on CUDA: on an H100 (2026-12-07, V = 49152, batch 1) the library sort beat
    the search in every form, eager 125 against 2,202 µs for top-p, CUDA graph 80 against 712,
    compiled 71 against 251 (docs/perf/gpu_speed.md). Elsewhere (the CPU) it searches while being
    traced by ``torch.compile`` (compiled, the search was 2.4-3.7x faster than the compiled sort
    on CPU) and sorts when run eagerly, where the ``32 / bits`` passes cost more than one library
    sort. Both are exact; they differ only in which of several equally likely tied ids fill a tie
    group that the cut splits.
    """
    if method == "auto":
        if device is not None and torch.device(device).type == "cuda":
            return False
        return bool(torch.compiler.is_compiling())
    return method == "search"


def top_p_drop(logits: Tensor, p: float, min_tokens_to_keep: int, bits: int = SEARCH_BITS) -> Tensor:
    """Tokens outside the nucleus, ``(B, V)`` bool, without sorting (the rule of :class:`~decoding.processors.TopP`).

    A token is dropped when the mass of the tokens at or below it in the ascending (stable) order
    of the logits, itself included, is at most ``1 - p``. Every tie group below the crossing one
    is dropped whole; the crossing group (key ``v``, member probability ``q``, mass ``A`` strictly
    below it) loses its first ``floor((1 - p - A) / q)`` members in index order.
    """
    keys = order_keys(logits)
    mass = fixed_point(torch.softmax(logits.float(), dim=-1))
    limit = fixed_scalar(1.0 - float(p))
    v = largest_below(keys, mass, lambda below: below <= limit, bits)  # (B, 1) the crossing key
    below_v = torch.where(keys < v, mass, 0).sum(-1, keepdim=True)
    tie = keys == v
    q = torch.where(tie, mass, 0).amax(-1, keepdim=True)
    n_drop = (limit - below_v).clamp(min=0) // q.clamp(min=1)
    drop = (keys < v) | first_in_index_order(tie, n_drop, bits)
    return drop & ~first_m(keys, min_tokens_to_keep, largest=True)


def typical_drop(gap: Tensor, probs: Tensor, mass: float, min_tokens_to_keep: int, bits: int = SEARCH_BITS) -> Tensor:
    """Atypical tokens, ``(B, V)`` bool, without sorting (the rule of :class:`~decoding.processors.Typical`).

    ``gap`` ``(B, V)``: typicality gaps ``|-log p - H|``; ``probs``: the probabilities whose mass is
    counted. The limit is the smallest gap ``g`` whose tokens ``gap <= g`` hold at least ``mass``;
    tokens above it are dropped, except the ``min_tokens_to_keep`` most typical (stable order).
    """
    keys = order_keys(gap)
    weights = fixed_point(probs)
    limit = fixed_scalar(float(mass))
    v = largest_below(keys, weights, lambda below: below < limit, bits)  # the limit's key
    return (keys > v) & ~first_m(keys, min_tokens_to_keep, largest=False)
