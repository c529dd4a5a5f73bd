"""The exact sort-free top-p cut of :func:`decoding.processors.cut.top_p_drop` as a few Triton launches.

:func:`~decoding.processors.cut.top_p_drop` finds the crossing key by 32 passes of torch ops over
the vocabulary; here the same search is a radix select over the 32-bit order keys in 4 rounds of
8 bits, each round one launch over ``(B, chunks)`` programs (``chunk`` vocabulary entries each):

1. round ``r`` (``r = 0 .. 3``): for ``r >= 1`` every program reads the finished histogram of
   round ``r - 1`` and the select's state (the digits before it, the mass below them) that the
   program ``(b, 0)`` of round ``r - 1`` wrote, and picks digit ``r - 1`` (every program computes
   the same choice from the same integers; program ``(b, 0)`` writes the new state). Then it adds
   the fixed-point mass of each of its tokens whose key has the chosen prefix into a global
   256-bin histogram of the next digit (``tl.atomic_add`` on ``int64``: integer sums are exact and
   order-independent, so the result is deterministic; ``COPIES`` copies of the histogram spread the
   atomics of round 0, whose keys crowd into a few bins). Round 3 also counts, per chunk, the
   tokens of each last digit (for the tie group's ranks in index order);
2. the mask launch picks the last digit (the crossing key ``v`` and ``below_v``, the mass below
   it, fall out of the select), reads the tie group's member count per chunk (its total gives the
   member mass ``q``, its prefix over the chunks before this one the index-order rank offset) and
   writes the drop mask: keys below ``v``, and the first ``n_drop = (limit - below_v) // q`` members
   of the tie group in index order. Or, for ``TopP`` (:func:`top_p_filter_kernel`), the logits
   with ``-inf`` where dropped, in place of ``masked_fill``.

A call is five Triton launches, one zero fill of the scratch (histograms, state and counts) and
the torch softmax, computed exactly as ``top_p_drop`` computes it (``torch.softmax(logits.float(),
-1)``, so the probabilities are identical; for bfloat16 logits ``.float()`` is one more launch, as
in ``top_p_drop``). No host synchronisation, static shapes: CUDA-graph capturable, and traceable
by ``torch.compile`` (user kernels; torch's analysis sees which arguments each kernel writes).
``min_tokens_to_keep > 1`` adds :func:`~decoding.processors.cut.first_m` in torch; ``1`` needs
nothing (see :func:`top_p_drop_kernel`).

The digit choice of a round: with ``base`` the mass of the keys below the chosen prefix and
``h[d]`` the histogram of the next digit among keys with that prefix, the digit is the largest ``d``
with ``base + h[0] + ... + h[d - 1] <= limit``: the same bits the bisection of
:func:`~decoding.processors.cut.largest_below` fixes one at a time (the mass below a candidate
threshold with this prefix and digit ``d`` followed by zeros is exactly that sum).

Runs on CUDA; with ``TRITON_INTERPRET=1`` (set before triton is imported) on CPU tensors, which
is how the tests check it bit for bit against ``top_p_drop``. Timed on an H100 by
``benchmarks/truncation.py`` (``method="kernel"`` rows) and in the decode loop; ``TopP``'s ``"auto"``
picks it for one row of CUDA logits (:func:`use_kernel`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from decoding.nn.decode_attention import interpreting
from decoding.processors.cut import first_m, fixed_scalar, order_keys

try:
    import triton
    import triton.language as tl
except ImportError:  # an optional extra: the kernels need it, nothing else does
    triton = None
    tl = None

DIGIT_BITS = 8  # 4 rounds of 8 bits over the 32-bit keys (the kernels' scratch layouts assume 4 rounds)
BINS = 2**DIGIT_BITS
ROUNDS = 32 // DIGIT_BITS
CHUNK = 2048  # vocabulary entries a program (V = 49152: 24 programs a row)
COPIES = 8  # copies of each histogram that the programs of a round add into (program c: copy c % COPIES)


def _step(hist_ptr, state_ptr, b, limit, R: tl.constexpr, BINS: tl.constexpr, COPIES: tl.constexpr):
    """The digit of round ``R - 1`` (``R >= 1``), from its finished histogram and the state the
    program ``(b, 0)`` of round ``R - 1`` wrote (the digits before it), for row ``b``.

    Returns ``prefix`` (the digits of rounds ``0 .. R - 1``, int64), ``base`` (the mass of the keys
    below that prefix), ``lim`` (the limit the select uses, see below), ``last`` (the new digit)
    and ``tie`` (the mass of the keys with the whole prefix; after 4 rounds: the tie group's mass).

    ``lim = min(limit, total - 1)`` (``total``: the mass of the row, the sum of round 0's
    histogram). When ``total > limit`` this is ``limit``, the oracle's. Otherwise (a tiny ``p``, where
    the float32 ``1 - p`` reaches the float32 probabilities' rounded sum) ``top_p_drop``'s search
    runs off the top (``v = 2^32 - 1``), drops every token and leaves the row to ``first_m``; with
    ``total - 1`` the crossing group is the largest key and all its members but the last in index
    order drop, which is exactly what ``first_m(keys, 1, largest=True)`` keeps (and a subset of
    what it keeps for any ``min_tokens_to_keep``), so the cut then agrees after ``first_m`` too.
    """
    bins = tl.arange(0, BINS)
    copies = tl.arange(0, COPIES)
    h = tl.sum(tl.load(hist_ptr + ((b * 4 + R - 1) * COPIES + copies[:, None]) * BINS + bins[None, :]), 0)
    if R == 1:
        prefix = tl.zeros([], tl.int64)
        base = tl.zeros([], tl.int64)
        # no method call on ``limit``: torch's kernel analysis inside torch.compile passed it as a
        # Python int on the H100 (torch 2.11: "'int' object has no attribute 'to'")
        lim = tl.minimum(tl.sum(h, 0) - 1, limit)
    else:
        prefix = tl.load(state_ptr + (b * 4 + R - 1) * 4)
        base = tl.load(state_ptr + (b * 4 + R - 1) * 4 + 1)
        lim = tl.load(state_ptr + (b * 4 + R - 1) * 4 + 2)
    below = base + tl.cumsum(h, 0) - h  # the mass below each candidate digit
    ok = below <= lim  # monotone in the digit: true for a prefix of the bins (bin 0 always: base <= lim)
    last = tl.maximum(tl.sum(ok.to(tl.int64), 0) - 1, 0)
    base = tl.sum(tl.where(bins == last, below, 0), 0)
    tie = tl.sum(tl.where(bins == last, h, 0), 0)
    return prefix * BINS + last, base, lim, last, tie


def _order_keys(x):
    """Loaded logits ``x`` (float32) -> order keys, int64 in ``[0, 2^32)``, as
    :func:`~decoding.processors.cut.order_keys`.

    The helpers take loaded values, not pointers: torch's analysis of a user kernel (inside
    ``torch.compile``) counts every pointer argument of a helper whose result feeds a store's
    address as written (and would copy the logits around each launch)."""
    bits = x.to(tl.int32, bitcast=True)
    bits = tl.where(bits == -2147483648, 0, bits).to(tl.int64)  # -0.0 -> +0.0
    return tl.where(bits >= 0, bits + 2147483648, -1 - bits)


def _fixed_point(p):
    """Loaded float32 probabilities -> int64 multiples of ``2^-62``, rounded up, as ``cut.fixed_point``."""
    return tl.ceil(p * 4611686018427387904.0).to(tl.int64)  # p * 2^62 is exact in float32


def _round_kernel(  # jitted below (_JITS): round ROUND of the radix select
    x_ptr, p_ptr, hist_ptr, state_ptr, count_ptr, V, C, sx_b, sp_b, limit,
    ROUND: tl.constexpr, CHUNK: tl.constexpr, BINS: tl.constexpr, DIGIT_BITS: tl.constexpr,
    COPIES: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)  # int64 offsets: (B, V) flat may pass 2^31 entries
    c = tl.program_id(1).to(tl.int64)
    if ROUND == 0:
        prefix = tl.zeros([], tl.int64)
    else:
        prefix, base, lim, last, tie = _step(hist_ptr, state_ptr, b, limit, ROUND, BINS, COPIES)
        # the next round starts from here; no other program of this launch reads this slot
        sp = state_ptr + (b * 4 + ROUND) * 4
        tl.store(sp, prefix, mask=c == 0)
        tl.store(sp + 1, base, mask=c == 0)
        tl.store(sp + 2, lim, mask=c == 0)
    offs = c * CHUNK + tl.arange(0, CHUNK)
    valid = offs < V
    keys = _order_keys(tl.load(x_ptr + b * sx_b + offs, mask=valid, other=0.0).to(tl.float32))
    mass = _fixed_point(tl.load(p_ptr + b * sp_b + offs, mask=valid, other=0.0))
    shift: tl.constexpr = 32 - DIGIT_BITS * (ROUND + 1)
    member = valid & ((keys >> (shift + DIGIT_BITS)) == prefix)  # round 0: every key (prefix 0)
    digit = (keys >> shift) & (BINS - 1)
    # zero masses add nothing: skipped (fewer atomics on the lowest bins). Program c adds into copy
    # c % COPIES of the histogram (the next round sums them): fewer programs contend for one address
    # (round 0's keys crowd into a few bins: sign and top exponent bits)
    hist_row = hist_ptr + ((b * 4 + ROUND) * COPIES + c % COPIES) * BINS
    tl.atomic_add(hist_row + digit, mass, mask=member & (mass > 0), sem="relaxed")
    if ROUND == 32 // DIGIT_BITS - 1:  # the last round: members per last digit in this chunk
        ones = tl.full([CHUNK], 1, tl.int64)
        tl.atomic_add(count_ptr + (b * C + c) * BINS + digit, ones, mask=member, sem="relaxed")


def _mask_kernel(  # jitted below (_JITS): the drop mask (or the filtered logits) from the finished select
    x_ptr, hist_ptr, state_ptr, count_ptr, out_ptr, V, C, sx_b, so_b, limit,
    CHUNK: tl.constexpr, BINS: tl.constexpr, DIGIT_BITS: tl.constexpr, C_PAD: tl.constexpr,
    COPIES: tl.constexpr, FILL: tl.constexpr,
):
    """Writes the drop mask (bool) to ``out``, or with ``FILL`` the logits with ``-inf`` where
    dropped (in the logits' dtype: ``logits.masked_fill(drop, -inf)``, without the mask)."""
    b = tl.program_id(0).to(tl.int64)  # int64 offsets: (B, V) flat may pass 2^31 entries
    c = tl.program_id(1).to(tl.int64)
    v, below_v, lim, last, tie_mass = _step(hist_ptr, state_ptr, b, limit, 32 // DIGIT_BITS, BINS, COPIES)
    chunks = tl.arange(0, C_PAD)
    counts = tl.load(count_ptr + (b * C + chunks) * BINS + last, mask=chunks < C, other=0)
    members = tl.sum(counts, 0)  # >= 1: the crossing key is a key of the row
    before = tl.sum(tl.where(chunks < c, counts, 0), 0)  # tie members in the chunks before this one
    q = tie_mass // tl.maximum(members, 1)  # every member has the same probability, hence mass
    n_drop = (lim - below_v) // tl.maximum(q, 1)  # lim >= below_v: no clamp at 0 needed
    offs = c * CHUNK + tl.arange(0, CHUNK)
    valid = offs < V
    x = tl.load(x_ptr + b * sx_b + offs, mask=valid, other=0.0)
    keys = _order_keys(x.to(tl.float32))
    tie = (keys == v) & valid
    tie_i = tie.to(tl.int64)
    rank = before + tl.cumsum(tie_i, 0) - tie_i  # members before this one, in index order
    drop = (keys < v) | (tie & (rank < n_drop))
    if FILL:
        if out_ptr.dtype.element_ty == tl.float64:
            out = tl.where(drop, float("-inf"), x)
        else:  # 16-bit floats through float32 and back, exactly (the interpreter has no bf16 constants)
            out = tl.where(drop, float("-inf"), x.to(tl.float32)).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + b * so_b + offs, out, mask=valid)
    else:
        # a bool tensor, not int8 viewed as bool: inductor cannot lower that view (H100, torch 2.11)
        tl.store(out_ptr + b * so_b + offs, drop, mask=valid)


# The kernels call the jitted helpers by the functions' own names (inductor rebuilds a user kernel's
# source with its helpers' sources, which define them under their ``__name__``: see fused_decode)
if triton is not None:
    _step = triton.jit(_step)
    _order_keys = triton.jit(_order_keys)
    _fixed_point = triton.jit(_fixed_point)
_FNS = {"round": _round_kernel, "mask": _mask_kernel}
_JITS = {name: triton.jit(fn) for name, fn in _FNS.items()} if triton is not None else {}


def kernel_available(device: torch.device | str) -> bool:
    """Whether :func:`top_p_drop_kernel` runs on ``device`` (CUDA, or the CPU under ``TRITON_INTERPRET=1``)."""
    return triton is not None and (torch.device(device).type == "cuda" or interpreting())


AUTO_MAX_ROWS = 64  # rows of logits up to which TopP's "auto" takes the kernel on CUDA (measured at batch 1-64)


def use_kernel(method: str, logits: Tensor) -> bool:
    """Whether :class:`~decoding.processors.TopP` with ``method`` cuts ``logits`` with these kernels now.

    ``"kernel"``: always. ``"auto"``: for CUDA logits of at most :data:`AUTO_MAX_ROWS` rows, with
    triton installed, outside ``torch.compile`` (inductor cannot compile these user kernels under torch
    2.11, H100 run of 2026-12-07) and without gradients. On an H100 (2026-12-08, V = 49,152,
    ``benchmarks/truncation.py --device cuda --batch 1 8 16 32 64``) the kernel replayed in a CUDA graph
    took 36.0, 44.5, 54.5, 81.1 and 134.4 µs at batch 1, 8, 16, 32 and 64 against 80.6, 184.8, 228.0,
    308.6 and 479.4 for the library sort, and the default engine ran batch 64 at 34,948 tok/s with it
    against 28,848 with the sort, batch 8 at 5,355 against 4,832 (docs/perf/gpu_speed.md, *Eighth H100
    run*); more rows than were measured keep sorting. Exact: the kept set of
    :func:`decoding.processors.cut.top_p_drop`.
    """
    if method == "kernel":
        return True
    if method != "auto" or logits.device.type != "cuda" or logits.requires_grad:
        return False
    rows = logits.numel() // max(logits.shape[-1], 1)
    return rows <= AUTO_MAX_ROWS and kernel_available(logits.device) and not torch.compiler.is_compiling()


def check_kernel_device(device: torch.device | str) -> None:
    """Raise a clear error where :func:`top_p_drop_kernel` cannot run."""
    if triton is None:
        raise RuntimeError("TopP(method='kernel') needs triton (pip install triton, CUDA); "
                           "use method='search' or 'sort' without it")
    if not kernel_available(device):
        raise ValueError(f"TopP(method='kernel') runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1 "
                         f"set before triton is imported), got logits on {torch.device(device)}")


def _cut(logits: Tensor, p: float, chunk: int, fill: bool) -> Tensor:
    """The launches: ``(B, V)`` bool drop mask, or with ``fill`` the filtered logits (``(B, V)``,
    contiguous, the logits' dtype)."""
    check_kernel_device(logits.device)
    if logits.dim() != 2:
        raise ValueError(f"the top-p kernel expects (B, V) logits, got {tuple(logits.shape)}")
    if chunk < 16 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two >= 16, got {chunk}")
    b, v = logits.shape
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    probs = torch.softmax(logits.float(), dim=-1)  # exactly top_p_drop's probabilities
    limit = fixed_scalar(1.0 - float(p))
    c = triton.cdiv(v, chunk)
    # one zero fill: per row the 4 histograms (COPIES copies each), the select's state after rounds
    # 1-3 (4 int64 a round: prefix, base, lim, unused), and per chunk the last round's member counts
    n_hist, n_state = b * ROUNDS * COPIES * BINS, b * ROUNDS * 4
    scratch = torch.zeros(n_hist + n_state + b * c * BINS, dtype=torch.long, device=logits.device)
    hist, state, counts = scratch[:n_hist], scratch[n_hist : n_hist + n_state], scratch[n_hist + n_state :]
    out = torch.empty(b, v, dtype=logits.dtype if fill else torch.bool, device=logits.device)
    grid = (b, c)
    # the limit is a runtime int64 argument (a power of two past int32: never specialised to 1), so
    # one compile serves every p (a server's requests each bring their own)
    consts = dict(CHUNK=chunk, BINS=BINS, DIGIT_BITS=DIGIT_BITS, COPIES=COPIES)
    for r in range(ROUNDS):
        _JITS["round"][grid](x, probs, hist, state, counts, v, c, x.stride(0), probs.stride(0), limit, ROUND=r,
                             **consts)
    _JITS["mask"][grid](x, hist, state, counts, out, v, c, x.stride(0), out.stride(0), limit,
                        C_PAD=triton.next_power_of_2(c), FILL=fill, **consts)
    return out


def top_p_drop_kernel(logits: Tensor, p: float, min_tokens_to_keep: int, chunk: int = CHUNK) -> Tensor:
    """Tokens outside the nucleus, ``(B, V)`` bool: bit for bit :func:`~decoding.processors.cut.top_p_drop`.

    Args:
        logits: ``(B, V)`` float logits (any float dtype; cut on their float32 probabilities).
        p: the nucleus mass, in ``(0, 1]``.
        min_tokens_to_keep: at least this many of the largest logits are kept (ties: highest ids).
        chunk: vocabulary entries a program (a power of two).

    ``min_tokens_to_keep == 1`` needs no extra work: the token ``first_m(keys, 1, largest=True)``
    keeps is the last (highest id) of the largest key's group, and the kernels never drop it.
    Either the crossing key ``v`` is below the largest key, and the largest group is not dropped at
    all; or ``v`` is the largest key, and since the mass up to and including the crossing group
    exceeds the limit, ``(limit - below_v) < members * q``, i.e. ``n_drop < members``: at least the
    last member in index order stays. (A row whose whole mass is within the limit is the case
    :func:`_step`'s ``lim`` covers.) The interpreter tests check it against ``top_p_drop`` with 1.
    """
    drop = _cut(logits, p, chunk, fill=False)
    if min_tokens_to_keep > 1:
        drop = drop & ~first_m(order_keys(logits), min_tokens_to_keep, largest=True)
    return drop


def top_p_filter_kernel(logits: Tensor, p: float, min_tokens_to_keep: int, chunk: int = CHUNK) -> Tensor:
    """``logits.masked_fill(top_p_drop(logits, p, min_tokens_to_keep), -inf)``, ``(B, V)``: what
    ``TopP`` returns. With ``min_tokens_to_keep == 1`` the mask launch writes it directly (no mask,
    no extra fill launch)."""
    if min_tokens_to_keep > 1:
        return logits.masked_fill(top_p_drop_kernel(logits, p, min_tokens_to_keep, chunk), float("-inf"))
    return _cut(logits, p, chunk, fill=True)
