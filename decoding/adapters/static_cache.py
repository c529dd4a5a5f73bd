"""A causal :class:`~decoding.nn.transformer.Transformer` with a preallocated (static) KV cache.

Keys and values of position ``j`` of every row live in cache slot ``j`` (the column of ``State.x``),
so a decode step has fixed shapes: one query per row attends to all ``S`` slots under a
``(B, S)`` "slot holds a real token" mask (left padding and the padding of finished rows stay
False). Fixed shapes let the one-token step be compiled (``torch.compile``) and replayed as a CUDA
graph, the way gpt-fast and vLLM decode small models fast.

As an engine model (``state -> Prediction``) it feeds ``state.x[:, kv_len:]``: the whole prompt on
the first call (prefill), one token per call after that. ``state.memory`` carries the session
(the cache buffers) and ``kv_len``; a state whose ``kv_len`` is shorter than what the session holds
rolls the session back (slots are simply marked empty), which is what speculative decoders need.

The cache is one mutable buffer per shape, reused across ``decode`` calls; each new prompt
claims it (an epoch counter), and a state from an older claim is refused with a clear error.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from decoding.core.fallback import FallbackWarning, error_tail
from decoding.core.types import Prediction, State
from decoding.nn.attention import KEY_MASK_BACKENDS, attention
from decoding.nn.transformer import Transformer, apply_rotary, check_token_ids

SCRATCH = 8  # spare slots after the capacity: warm-up and capture write there, never read
FUSED_MAX_BATCH = 8  # the fused step's kernels take at most this many rows (decoding.nn.fused_decode.MAX_BATCH)


def static_forward(
    net: Transformer,
    tokens: Tensor,
    positions: Tensor,
    kv_cache: list[Tensor],
    slots: Tensor,
    mask: Tensor,
    backend: str | None,
    qkv: list[Tensor] | None = None,
    upto: int | None = None,
    split_mlp: bool = False,
    fused: bool = False,
    fused_combine: bool = True,
    pdl: bool = False,
) -> Tensor:
    """Run ``tokens`` through ``net``, writing their keys/values into the static cache.

    Args:
        tokens: ``(B, n)`` ids; positions: ``(B, n)`` rotary positions.
        kv_cache: per layer ``(2, B, Hkv, S, D)`` (keys, then values), written in place at ``slots``
            by one indexed write per layer.
        slots: ``(n,)`` long, the cache slots of the ``n`` tokens.
        mask: bool ``(B, 1, n, S)``, True where a query may attend to a slot.
        backend: attention backend (see :mod:`decoding.nn.attention`).
        qkv: optional per-layer ``[q; kv]`` weights ``((H + 2 Hkv) D, dim)``: one matmul instead of two.
        upto: attend only to slots ``< upto`` (all later slots must be empty); ``None`` keeps the
            static shape that compilation and CUDA graphs need.
        split_mlp: compute gate and up as two matmuls on the halves of the fused weight (faster
            with MKL on CPU for SmolLM2's shapes; one matmul is fewer kernels on GPU).
        fused: run a one-token step (``n == 1``) of at most :data:`~decoding.nn.fused_decode.MAX_BATCH`
            rows with the ``"triton"`` backend as five kernels a layer (:mod:`decoding.nn.fused_decode`;
            needs ``qkv``); any other call ignores it and runs the unfused ops.
        fused_combine: in the fused step, combine the attention's key chunks inside the output
            projection's kernel (five kernels a layer); ``False``: with ``combine_splits``' torch ops
            before it (six: one more kernel, each program of the projection no longer redoes it).
        pdl: in the fused step, launch its kernels with programmatic dependent launch (Hopper's
            ``griddepcontrol``, :func:`decoding.nn.decode_attention.pdl_launch`): a kernel's programs
            start while the previous kernel finishes and wait for it before touching memory, which
            hides the launch gap between dependent kernels. Ignored on the CPU (the interpreter).

    Returns:
        logits of the last position, ``(B, V)`` in the weights' dtype.
    """
    cfg = net.cfg
    b, n = tokens.shape
    if fused and n == 1 and backend == "triton" and b <= FUSED_MAX_BATCH:
        if qkv is None:
            raise ValueError("the fused step needs the per-layer [q; kv] weights (qkv)")
        return _fused_step(net, tokens, positions, kv_cache, slots, mask, qkv, upto, fused_combine, pdl)
    hd = cfg.dim // cfg.n_heads
    hq, hkv = cfg.n_heads, cfg.n_kv_heads
    # rotary tables for the (B, n, heads, D) layout of the projections: the rotation of q and k is
    # one elementwise op over the fused projection (one kernel under inductor, not one per tensor)
    cos = net.rope_cos[positions][:, :, None]
    sin = net.rope_sin[positions][:, :, None]
    x = net.embed(tokens)
    if upto is not None:
        mask = mask[..., :upto]
    groups = hq // hkv
    group_mask = mask
    if groups > 1:
        group_mask = mask[:, :, None].expand(b, 1, groups, n, mask.shape[-1]).reshape(b, 1, groups * n, -1)
    key_mask_step = n == 1 and backend in KEY_MASK_BACKENDS
    if tokens.is_cuda and not key_mask_step:
        # the bool mask as an additive bias once per step: SDPA would otherwise convert it in every
        # layer (one kernel a layer on CUDA; on the CPU the bool mask is kept, as SDPA takes it there)
        group_mask = torch.zeros((), dtype=x.dtype, device=x.device).masked_fill(~group_mask, float("-inf"))
    for i, blk in enumerate(net.blocks):
        h = blk.attn_norm(x)
        if qkv is None:
            q = apply_rotary(blk.q(h).view(b, n, hq, hd), cos, sin)
            kv = blk.kv(h).view(b, n, 2 * hkv, hd)
            k, v = apply_rotary(kv[:, :, :hkv], cos, sin), kv[:, :, hkv:]
        else:
            t = F.linear(h, qkv[i]).view(b, n, hq + 2 * hkv, hd)
            qk = apply_rotary(t[:, :, : hq + hkv], cos, sin)
            q, k, v = qk[:, :, :hq], qk[:, :, hq:], t[:, :, hq + hkv :]
        # keys and values in one index_put_ (the form inductor updates in place, as in gpt-fast)
        kv_cache[i][:, :, :, slots] = torch.stack([k, v]).transpose(2, 3)
        kc, vc = kv_cache[i].unbind(0) if upto is None else kv_cache[i][:, :, :, :upto].unbind(0)
        # grouped-query attention as Hkv heads with G * n queries each: the G query heads that share
        # a key/value head see the same keys and mask, so no copy of the cache per query head
        qg = q.transpose(1, 2).reshape(b, hkv, groups * n, hd)
        key_mask = mask if key_mask_step else group_mask  # one query: a per-slot mask is enough
        a = attention(qg, kc, vc, mask=key_mask, backend=backend).reshape(b, hq, n, hd)
        x = x + blk.o(a.transpose(1, 2).reshape(b, n, -1))
        h = blk.mlp_norm(x)
        if split_mlp:
            w = blk.gate_up.weight
            g, u = F.linear(h, w[: cfg.hidden]), F.linear(h, w[cfg.hidden :])
        else:
            g, u = blk.gate_up(h).chunk(2, dim=-1)
        x = x + blk.down(F.silu(g) * u)
    x = net.norm(x[:, -1])
    w = net.embed.weight if net.head is None else net.head.weight
    return x @ w.t()


def _fused_step(
    net: Transformer, tokens: Tensor, positions: Tensor, kv_cache: list[Tensor], slots: Tensor, mask: Tensor,
    qkv: list[Tensor], upto: int | None, fused_combine: bool = True, pdl: bool = False,
) -> Tensor:
    """The one-token step of :func:`static_forward` in five kernels a layer (``fused=True``).

    RMSNorm + ``[q; k; v]`` + rotary + cache write, split-K decode attention (its chunks), their
    combine + output projection + residual, RMSNorm + ``[gate; up]`` + SwiGLU, down projection +
    residual (:mod:`decoding.nn.fused_decode`). Same arguments and result as :func:`static_forward`;
    ``pdl``: every kernel of the five with programmatic dependent launch.
    """
    from decoding.nn import fused_decode as fd
    from decoding.nn.decode_attention import combine_splits, decode_attention_partials

    cfg = net.cfg
    b = tokens.shape[0]
    x = net.embed(tokens).reshape(b, cfg.dim)
    # (B, 1, 1, S): one key mask a row, as the attention kernel reads it (int8), converted once for all layers
    valid = (mask if upto is None else mask[..., :upto]).reshape(b, -1).to(torch.int8)
    pos = positions.reshape(b)
    for i, blk in enumerate(net.blocks):
        q = fd.norm_qkv_rotary_cache(x, blk.attn_norm.weight, qkv[i], net.rope_cos, net.rope_sin, pos,
                                     kv_cache[i], slots, cfg.n_heads, blk.attn_norm.eps, pdl=pdl)
        kc, vc = kv_cache[i].unbind(0) if upto is None else kv_cache[i][:, :, :, :upto].unbind(0)
        out, lse = decode_attention_partials(q, kc, vc, valid, pdl=pdl)  # per key chunk, combined by the next kernel
        if fused_combine:
            x = fd.combine_gemv_residual(out, lse, blk.o.weight, x, pdl=pdl)
        else:  # as decode_attention returns it: float32 combine, the model's dtype
            x = fd.gemv_residual(combine_splits(out, lse).to(x.dtype).reshape(b, -1), blk.o.weight, x, pdl=pdl)
        h = fd.norm_gate_up_silu(x, blk.mlp_norm.weight, blk.gate_up.weight, blk.mlp_norm.eps, pdl=pdl)
        x = fd.gemv_residual(h, blk.down.weight, x, pdl=pdl)
    x = net.norm(x)
    w = net.embed.weight if net.head is None else net.head.weight
    return x @ w.t()


def _hopper_or_later(device: torch.device) -> bool:
    """A CUDA ``device`` of compute capability 9.0 or later (PDL's ``griddepcontrol``; where the fused
    launches were measured)."""
    return torch.cuda.get_device_capability(device) >= (9, 0)


@dataclass(eq=False)
class StaticSession:
    """The mutable buffers of one batch shape: caches, slot mask and the decode step's inputs.

    Attributes:
        kv: per layer ``(2, B, Hkv, S, D)`` with ``S = capacity + SCRATCH``: keys and values of a
            layer in one buffer, so a step writes both with one kernel (views: :attr:`k`, :attr:`v`).
        valid: ``(B, S)`` bool, the slot holds a real token.
        tok: ``(B, 1)`` the token the next decode step feeds; slot: ``(1,)`` its slot.
        fused: its one-token steps run the fused kernels (:meth:`StaticCausalLM.fuses`, fixed per batch).
        attention: the attention backend of its unfused one-token steps when it differs from the
            model's (:meth:`StaticCausalLM.step_attention`, fixed per batch); None: the model's.
        length: slots written so far; epoch: bumped when a new prompt claims the session.
        rows: made by :meth:`StaticCausalLM.merge_rows` (outside the prompt pool; recycled by
            :meth:`StaticCausalLM.release_rows`).
    """

    kv: list[Tensor]
    valid: Tensor
    tok: Tensor
    slot: Tensor
    capacity: int
    length: int = 0
    epoch: int = 0
    graph: torch.cuda.CUDAGraph | None = None
    graph_logits: Tensor | None = None
    extras: dict = field(default_factory=dict)
    rows: bool = False
    fused: bool = False
    attention: str | None = None

    @property
    def k(self) -> list[Tensor]:
        """Per layer the keys, ``(B, Hkv, S, D)`` views of :attr:`kv`."""
        return [t[0] for t in self.kv]

    @property
    def v(self) -> list[Tensor]:
        """Per layer the values, ``(B, Hkv, S, D)`` views of :attr:`kv`."""
        return [t[1] for t in self.kv]

    @property
    def batch_size(self) -> int:
        return int(self.valid.shape[0])


def _triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


class StaticCausalLM:
    """``state -> Prediction(logits (B, V))`` for a causal :class:`Transformer` with a static KV cache.

    Args:
        net: a causal transformer (e.g. from :func:`decoding.adapters.llama.load_native_llama`).
        capacity: cache slots per row (prompt + new tokens); grown by doubling when exceeded. Set it
            to the longest sequence you will decode (the text API does): attention reads every slot.
        backend: attention backend override (default: xformers on CUDA, SDPA on CPU; the compiled
            one-token step uses SDPA unless a backend is given).
        compile: ``torch.compile`` the one-token step (default: on CUDA when triton is installed).
        cuda_graphs: replay the one-token step as a CUDA graph (default: on CUDA).
        compile_mode: ``torch.compile`` mode, e.g. ``"max-autotune-no-cudagraphs"`` (we capture the
            graphs ourselves, so modes that add CUDA graphs are not useful).
        fused: run the one-token step of batches of at most 8 rows as five Triton kernels a layer
            (:mod:`decoding.nn.fused_decode`, with the ``"triton"`` decode attention, which it
            implies: ``backend`` must be ``None`` or ``"triton"``); larger batches and prefills run
            unfused. Needs triton and CUDA (or the CPU under ``TRITON_INTERPRET=1``).
            ``"auto"``: the fused step only for batches with measured launches (:meth:`fuses`: today
            batch 1 of SmolLM2-135M's layer on Hopper GPUs), the unfused step with the default
            attention for every other batch, prefills and devices (no error where it cannot fuse).
        fused_combine: with ``fused``, where the attention's key chunks are combined (see
            :func:`static_forward`); ``False`` without ``fused`` is refused.
        pdl: with ``fused``, launch the fused step's kernels with programmatic dependent launch
            (see :func:`static_forward`; CUDA on Hopper or later, or the CPU under the interpreter,
            where it changes nothing); without ``fused`` it is refused. The fused step then runs
            uncompiled: inductor rebuilds a user Triton kernel's launch from its own metadata and
            drops ``launch_pdl`` (torch 2.11 to 2.13), so a compiled step would silently lose PDL
            (with ``fused=True``, ``compile`` defaults to False and True is refused). It is still
            captured as a CUDA graph (``cuda_graphs``), which is where the launch gaps it hides
            matter. ``None`` (default): on with ``fused="auto"`` where it fuses (Hopper GPUs), off
            otherwise; the auto engine's unfused sessions stay compiled. Measured on an H100
            (docs/perf/gpu_speed.md, *Sixth H100 run*): batch 1 of SmolLM2-135M, 1,188 and 1,146 tok/s
            against 1,016 for the compiled fused step and 1,085 / 1,065 for the uncompiled one.

    On CUDA the attention projections are fused into one ``[q; kv]`` weight per layer at
    construction; call :meth:`refresh_weights` after changing them in ``net``.
    """

    def __init__(
        self,
        net: Transformer,
        capacity: int = 256,
        backend: str | None = None,
        compile: bool | None = None,
        cuda_graphs: bool | None = None,
        compile_mode: str | None = None,
        fused: bool | str = False,
        fused_combine: bool = True,
        pdl: bool | None = None,
    ) -> None:
        if not net.cfg.causal:
            raise ValueError("StaticCausalLM needs a causal transformer (TransformerConfig(causal=True))")
        self.net = net.eval()
        self.capacity = int(capacity)
        if fused not in (True, False, "auto"):
            raise ValueError(f"fused must be True, False or 'auto', got {fused!r}")
        self.fused_auto = fused == "auto"
        self.fused = self._auto_fusable() if self.fused_auto else bool(fused)
        if not fused_combine and not self.fused:
            raise ValueError("fused_combine=False applies to the fused step only: pass fused=True with it")
        self.fused_combine = bool(fused_combine)
        if pdl is not None and not isinstance(pdl, bool):
            raise ValueError(f"pdl must be True, False or None (auto), got {pdl!r}")
        self.pdl = (self.fused_auto and self.fused) if pdl is None else pdl  # auto: fused only on Hopper+ GPUs
        if self.pdl and not self.fused:
            raise ValueError("pdl=True applies to the fused step only: pass fused=True with it")
        pdl_only = self.pdl and not self.fused_auto  # every session the step serves may be a PDL one
        if pdl_only and compile:
            raise ValueError("pdl=True runs the step uncompiled: inductor drops a user Triton kernel's launch_pdl "
                             "(pass compile=False or leave it None)")
        if self.pdl and self.device.type == "cuda" and not _hopper_or_later(self.device):
            raise ValueError("pdl=True needs a GPU of compute capability 9.0 or later (griddepcontrol: Hopper+); "
                             f"got {torch.cuda.get_device_name(self.device)}")
        if self.fused and not self.fused_auto:
            from decoding.nn.fused_decode import fused_available

            if backend not in (None, "triton"):
                raise ValueError(f"fused=True runs the triton decode attention; got backend={backend!r}")
            if not fused_available(self.device):
                raise ValueError("fused=True needs triton and a CUDA model (or TRITON_INTERPRET=1 on CPU)")
            backend = "triton"
        self.backend = backend
        cuda = self.device.type == "cuda"
        self.compile = (cuda and _triton_available() and not pdl_only) if compile is None else bool(compile)
        if backend == "flex" and self.compile and not cuda:
            # torch 2.13's CPU flex template gave NaN logits now and then (a race: 3-4 threads, a few runs in five)
            raise ValueError("backend='flex' compiles on CUDA only: the CPU's compiled flex kernel is not reliable "
                             "(NaN logits with several threads); pass compile=False or another backend on the CPU")
        self.cuda_graphs = cuda if cuda_graphs is None else bool(cuda_graphs)
        if self.cuda_graphs and not cuda:
            raise ValueError("cuda_graphs=True needs the model on a CUDA device")
        self._sessions: dict[tuple[int, int], StaticSession] = {}  # (batch, capacity) -> session
        self.max_sessions = 4
        self._free_rows: dict[tuple[int, int], StaticSession] = {}  # released merge_rows sessions
        self.refresh_weights()
        # The compiled one-token step uses SDPA unless a backend is forced: inductor cannot compile
        # xformers' Triton split-K decode kernel (measured on the H100, torch 2.11 / xformers 0.0.35:
        # the compile failed and the step ran eagerly). SDPA needs no key/value copy here because
        # the query heads are grouped by key/value head (see static_forward).
        self.decode_backend = backend if (backend is not None or not self.compile) else "sdpa"
        self._compiled: Callable[[StaticSession], Tensor] | None = None
        if self.compile:
            self._compiled = torch.compile(self._decode_step, dynamic=False, mode=compile_mode)

    def _auto_fusable(self) -> bool:
        """``fused="auto"``: the fused step can run here (triton and a CUDA GPU of compute capability 9.0 or
        later, where the shipped launches were measured); which batches it takes is :meth:`fuses`."""
        from decoding.nn.fused_decode import fused_available

        dev = self.device
        return dev.type == "cuda" and fused_available(dev) and _hopper_or_later(dev)

    def fuses(self, b: int) -> bool:
        """Whether a one-token step of ``b`` rows runs fused: always with ``fused=True`` (up to
        :data:`FUSED_MAX_BATCH` rows); with ``fused="auto"`` only for batches whose every kernel has a
        measured launch in :data:`decoding.nn.fused_decode.TUNED` (today batch 1, SmolLM2-135M's layer:
        969 tok/s against 714 for the unfused compiled step on an H100, docs/perf/gpu_speed.md). Other
        batches run the unfused step with the default attention."""
        if not self.fused or b > FUSED_MAX_BATCH:
            return False
        if not self.fused_auto:
            return True
        from decoding.nn.fused_decode import layer_tuned

        cfg = self.net.cfg
        return layer_tuned(b, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.dim // cfg.n_heads, cfg.hidden)

    def step_attention(self, b: int, slots: int) -> str | None:
        """The attention of the compiled unfused one-token step of ``b`` rows over ``slots`` cache slots, where it
        is not the model's default: ``"triton"`` (our split-K kernel,
        :func:`decoding.nn.decode_attention.decode_attention`) where its measured launch for this batch beat
        SDPA on a GPU (:func:`decoding.nn.decode_attention.beats_sdpa`: the ``"decode_attention"`` rows of the
        launch table), for a CUDA model whose step is compiled with no backend forced; None otherwise."""
        if self.backend is not None or not self.compile or self.device.type != "cuda" or self.fuses(b):
            return None
        from decoding.nn.decode_attention import beats_sdpa, triton_available

        cfg = self.net.cfg
        hd = cfg.dim // cfg.n_heads
        return "triton" if triton_available() and beats_sdpa(b, slots, cfg.n_heads * hd) else None

    def refresh_weights(self) -> None:
        """Rebuild the fused ``[q; kv]`` weights (call after changing the attention weights of ``net``).

        Only on CUDA, where one matmul instead of two saves a kernel per layer; on CPU (MKL) the
        separate products measured faster for SmolLM2's shapes (batch 1-50), and so does splitting
        the fused gate|up product (``benchmarks/text_decode_step.py``).
        """
        self._qkv = None
        self._split_mlp = self.device.type != "cuda"
        if self.device.type == "cuda":
            with torch.no_grad():
                self._qkv = [torch.cat([blk.q.weight, blk.kv.weight], dim=0) for blk in self.net.blocks]
        self._fused_qkv = self._qkv  # the fused step's [q; kv] weights (on CPU only it uses them)
        if self.fused and self._qkv is None:
            with torch.no_grad():
                self._fused_qkv = [torch.cat([blk.q.weight, blk.kv.weight], dim=0) for blk in self.net.blocks]

    @property
    def device(self) -> torch.device:
        return self.net.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.embed.weight.dtype

    @property
    def vocab_size(self) -> int:
        return self.net.cfg.vocab_size

    # --- sessions -------------------------------------------------------------------------
    def _round(self, needed: int) -> int:
        return -(-max(self.capacity, needed) // 64) * 64  # multiples of 64: fewer shapes to compile

    def session(self, batch: int, needed: int) -> StaticSession:
        """A session for ``batch`` rows with room for ``needed`` slots (new or pooled), claimed anew."""
        cap = self._round(needed)
        key = (batch, cap)
        sess = self._sessions.pop(key, None)
        if sess is None:
            sess = self.new_session(batch, needed)
        self._sessions[key] = sess  # most recently used last
        while len(self._sessions) > self.max_sessions:  # drop the least recently used shape
            self._sessions.pop(next(iter(self._sessions)))
        sess.epoch += 1
        sess.length = 0
        sess.valid.zero_()
        return sess

    def new_session(self, batch: int, needed: int) -> StaticSession:
        """A fresh session outside the pool (for callers that keep their own)."""
        cap = self._round(needed)
        cfg = self.net.cfg
        hd = cfg.dim // cfg.n_heads
        s = cap + SCRATCH
        shape = (2, batch, cfg.n_kv_heads, s, hd)
        kw = dict(device=self.device, dtype=self.dtype)
        return StaticSession(
            kv=[torch.zeros(shape, **kw) for _ in range(cfg.n_layers)],
            valid=torch.zeros(batch, s, dtype=torch.bool, device=self.device),
            tok=torch.zeros(batch, 1, dtype=torch.long, device=self.device),
            slot=torch.full((1,), cap, dtype=torch.long, device=self.device),
            capacity=cap,
            fused=self.fuses(batch),
            attention=self.step_attention(batch, s),
        )

    def _grow(self, sess: StaticSession, needed: int) -> StaticSession:
        size = max(needed, 2 * sess.capacity)
        bigger = self._rows_session(sess.batch_size, size) if sess.rows else self.session(sess.batch_size, size)
        for dst, src in zip(bigger.kv, sess.kv, strict=True):
            dst[:, :, :, : sess.capacity].copy_(src[:, :, :, : sess.capacity])
        bigger.valid[:, : sess.capacity].copy_(sess.valid[:, : sess.capacity])
        bigger.length = sess.length
        return bigger

    # --- rows joining and leaving a batch (continuous batching) ------------------------------
    def _rows_session(self, batch: int, needed: int) -> StaticSession:
        """A session outside the prompt pool (a released one of this shape, or a new one), claimed anew."""
        sess = self._free_rows.pop((batch, self._round(needed)), None)
        if sess is None:
            sess = self.new_session(batch, needed)
            sess.rows = True
        sess.epoch += 1
        sess.length = 0
        sess.valid.zero_()
        return sess

    def merge_rows(self, parts: Sequence[tuple[Mapping[str, Any], Tensor]], kv_len: int, room: int = 0) -> dict[str, Any]:
        """Copy rows of the parts' sessions, right-aligned into ``kv_len`` slots, into a new session
        with ``room`` more slots (see :class:`decoding.core.rows.RowMemory`).

        The parts' sessions are only read. On CUDA a released session of the same shape keeps its
        captured graph, so steady serving replays graphs instead of capturing new ones.
        """
        rows = sum(int(index.numel()) for _, index in parts)
        sess = self._rows_session(rows, kv_len + room + 1)
        at = 0
        for memory, index in parts:
            src: StaticSession = memory["static_session"]
            if src is sess or src.epoch != memory.get("static_epoch"):
                raise ValueError("a state's static KV cache was reused by another batch; its rows are lost")
            have = int(memory["kv_len"])
            shift = kv_len - have
            lo, dst = max(0, -shift), max(0, shift)
            idx = index.to(self.device)
            n = int(idx.numel())
            for d, s in zip(sess.kv, src.kv, strict=True):
                d[:, at : at + n, :, dst:kv_len] = s[:, :, :, lo:have].index_select(1, idx)
            sess.valid[at : at + n, dst:kv_len] = src.valid[:, lo:have].index_select(0, idx)
            at += n
        sess.length = kv_len
        return {"static_session": sess, "static_epoch": sess.epoch, "kv_len": kv_len}

    def release_rows(self, memory: Mapping[str, Any]) -> None:
        """Keep ``memory``'s session (made by :meth:`merge_rows`) for a later merge of the same shape."""
        sess = memory.get("static_session")
        if isinstance(sess, StaticSession) and sess.rows:
            sess.epoch += 1  # states still holding it are refused from now on
            self._free_rows[(sess.batch_size, sess.capacity)] = sess
            while len(self._free_rows) > self.max_sessions:
                self._free_rows.pop(next(iter(self._free_rows)))

    # --- the two forward shapes -------------------------------------------------------------
    def prefill(self, sess: StaticSession, tokens: Tensor, attention_mask: Tensor, start: int) -> Tensor:
        """Write ``tokens`` ``(B, n)`` at slots ``start..start+n-1``; ``attention_mask`` ``(B, start+n)``."""
        check_token_ids(tokens, self.net.cfg.vocab_size)
        n = tokens.shape[1]
        am = attention_mask.to(torch.bool)
        sess.valid[:, start : start + n] = am[:, start : start + n]
        sess.valid[:, start + n :] = False
        positions = (am.long().cumsum(-1) - 1).clamp(min=0)[:, start:]
        s = sess.valid.shape[1]
        q_slot = start + torch.arange(n, device=self.device)
        keys = torch.arange(s, device=self.device)[None, :]
        causal = keys <= q_slot[:, None]  # (n, S)
        own = keys == q_slot[:, None]  # a padding query sees itself: no fully masked rows, no NaN
        mask = ((causal[None] & sess.valid[:, None, :]) | own[None])[:, None]  # (B, 1, n, S)
        logits = static_forward(self.net, tokens, positions, sess.kv, q_slot, mask, self.backend, self._qkv,
                                upto=start + n, split_mlp=self._split_mlp)
        sess.length = start + n
        return logits

    def _decode_step(self, sess: StaticSession, upto: int | None = None) -> Tensor:
        """One token per row: ``sess.tok`` at ``sess.slot`` (its ``valid`` bit already set).

        Graph-safe with ``upto=None``; eager callers that know the slot pass ``upto = slot + 1``
        so attention reads only the written slots.
        """
        positions = sess.valid.long().sum(-1, keepdim=True) - 1
        mask = sess.valid[:, None, None, :]
        fused = sess.fused
        backend = "triton" if fused else (sess.attention if self.compile and sess.attention else self.decode_backend)
        return static_forward(self.net, sess.tok, positions, sess.kv, sess.slot, mask, backend,
                              self._fused_qkv if fused else self._qkv,
                              upto=upto, split_mlp=self._split_mlp, fused=fused, fused_combine=self.fused_combine,
                              pdl=self.pdl and fused)

    def step_fn(self, sess: StaticSession, upto: int | None = None) -> Tensor:
        """The one-token step, compiled when enabled; falls back to eager (with a warning) if compilation fails.

        ``upto`` (eager only): attend to slots ``< upto``; ignored when compiled (static shapes).
        """
        if self._compiled is not None and not (self.pdl and sess.fused):  # PDL steps run uncompiled (see pdl)
            try:
                return self._compiled(sess)
            except Exception as e:  # compilation problems surface on the first call
                warnings.warn(f"torch.compile of the decode step failed ({error_tail(e)}); running it eagerly",
                              FallbackWarning, stacklevel=2)
                self._compiled = None
                self.compile = False
                self.decode_backend = self.backend
        return self._decode_step(sess, upto)

    def decode_step(self, sess: StaticSession, upto: int | None = None) -> Tensor:
        """Run the one-token step (as a CUDA graph when enabled); returns ``(B, V)`` logits (shared buffer)."""
        if not self.cuda_graphs:
            return self.step_fn(sess, upto)
        if sess.graph is None:
            try:
                self.capture(sess)
            except Exception as e:  # an op that cannot be captured: keep going without graphs
                warnings.warn(f"CUDA graph capture failed ({error_tail(e)}); running eagerly", FallbackWarning,
                              stacklevel=2)
                self.cuda_graphs = False
                return self.step_fn(sess, upto)
        sess.graph.replay()
        return sess.graph_logits

    def capture(self, sess: StaticSession, body: Callable[[], Tensor] | None = None) -> tuple[torch.cuda.CUDAGraph, Tensor]:
        """Warm up and capture ``body`` (default: the decode step) as a CUDA graph on ``sess``.

        Warm-up and capture write keys/values into a scratch slot only, and every small buffer
        (the slot mask, the step's inputs, ``sess.extras``) is restored afterwards, so capturing in
        the middle of a generation is safe. Returns the graph and the tensor ``body`` returned
        (a buffer that every replay refills).
        """
        default = body is None
        fn = body if body is not None else (lambda: self.step_fn(sess))
        saved = [(sess.valid, sess.valid.clone()), (sess.tok, sess.tok.clone()), (sess.slot, sess.slot.clone())]
        saved += [(t, t.clone()) for t in sess.extras.values() if isinstance(t, Tensor)]
        sess.slot.fill_(sess.capacity)  # scratch slot
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    fn()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = fn()
        finally:
            for target, value in saved:
                target.copy_(value)
        if default:
            sess.graph, sess.graph_logits = graph, out
        return graph, out

    # --- the engine model ---------------------------------------------------------------
    @torch.inference_mode()
    def __call__(self, state: State) -> Prediction:
        am: Tensor = state.memory["attention_mask"]
        total = state.x.shape[1]
        sess: StaticSession | None = state.memory.get("static_session")
        kv_len = int(state.memory.get("kv_len", 0)) if sess is not None else 0
        if sess is None:
            sess = self.session(state.batch_size, total + 1)
        elif sess.epoch != state.memory.get("static_epoch"):
            raise ValueError(
                "this state's static KV cache was claimed by a newer prompt on the same model; "
                "decode one batch at a time per StaticCausalLM, or use separate model objects"
            )
        if sess.length > kv_len:  # roll back (e.g. rejected draft tokens)
            sess.valid[:, kv_len:] = False
            sess.length = kv_len
        elif sess.length < kv_len:
            raise ValueError(f"static KV cache holds {sess.length} slots but the state expects {kv_len}")
        if total > sess.capacity:
            sess = self._grow(sess, total)
        n = total - kv_len
        if n == 1 and kv_len > 0:
            sess.tok.copy_(state.x[:, kv_len:])
            sess.slot.fill_(kv_len)
            sess.valid[:, kv_len] = am[:, kv_len]
            logits = self.decode_step(sess, upto=total)
            sess.length = total
        else:
            logits = self.prefill(sess, state.x[:, kv_len:], am, kv_len)
        memory = {"static_session": sess, "static_epoch": sess.epoch, "kv_len": total}
        return Prediction(logits=logits.to(torch.float32, copy=True), memory=memory)
