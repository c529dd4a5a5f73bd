"""State-free processors replayed as one CUDA graph per logits shape (the decode loop's sampling chain on CUDA).

At batch 1 a decode step is launch-bound: a temperature + top-p chain is about ten small kernels
(the sort path: sort, softmax, cumsum, compare, scatter, fill) whose launches and gaps cost more than
their work (on an H100, V = 49,152: top-p 269 µs a call eagerly against 81 µs replayed from a CUDA
graph, docs/perf/gpu_speed.md, *Fourth H100 run*). Processors that read nothing but the logits
(``stateless = True`` on the class: temperature, top-k, top-p, min-p, typical) are pure functions of
one tensor, so :func:`graph_chain` puts a chain made only of them behind one
:class:`~decoding.models.graphs.GraphReplay`: the same kernels, replayed, hence the same numbers.
A chain with any other processor (repetition penalty reads the tokens so far; per-row settings)
runs eagerly, as does everything off CUDA. A capture that fails warns once and runs eagerly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from decoding.core.protocols import Processor
from decoding.core.types import State
from decoding.models.graphs import GraphReplay

ENABLED = True  # False: every chain runs eagerly (a switch for comparisons and tests)
MAX_CHAINS = 8  # chains kept (least recently used dropped): each holds its graphs and their buffers
GRAPHS_PER_CHAIN = 2  # logits shapes a chain keeps graphs for
CAPTURE_AFTER = 2  # a shape is captured at its second call in a row (a batch that keeps changing runs eagerly)
_CHAINS: OrderedDict[tuple, GraphedChain] = OrderedDict()
_LOCK = threading.Lock()


class GraphedChain:
    """``processors`` (each ``stateless``) applied in order; on CUDA replayed as one graph per logits shape.

    A processor like any other (``(logits, state) -> logits``, a new tensor). Replays are serialised
    by a lock: the graph's input and output buffers are shared by every caller of this chain. A
    logits shape is captured at its :data:`CAPTURE_AFTER`-th call in a row (a decode loop's steps
    all have one shape; a server whose batch changes every step stays eager instead of capturing
    each new shape), and graphs are kept for :data:`GRAPHS_PER_CHAIN` shapes.
    """

    def __init__(self, processors: Sequence[Processor]) -> None:
        self.processors = tuple(processors)
        self.replay = GraphReplay(self._eager, max_graphs=GRAPHS_PER_CHAIN)
        self._lock = threading.Lock()
        self._shape: tuple = ()
        self._streak = 0

    def _eager(self, logits: Tensor) -> Tensor:
        out = logits
        for proc in self.processors:
            out = proc(out, None)
        return out

    def __call__(self, logits: Tensor, state: State | None = None) -> Tensor:
        """``logits`` ``(B, V)`` -> the chain's ``(B, V)`` (replayed on CUDA, eager elsewhere)."""
        if logits.device.type != "cuda" or logits.requires_grad or torch.compiler.is_compiling():
            return self._eager(logits)
        with self._lock:
            if not self._replays(GraphReplay.signature(logits)):
                return self._eager(logits)
            return self.replay(logits)

    def _replays(self, signature: tuple) -> bool:
        """Whether a call with logits of ``signature`` replays (or captures) a graph: yes when one is
        kept for it, or at its :data:`CAPTURE_AFTER`-th call in a row."""
        self._streak = self._streak + 1 if signature == self._shape else 1
        self._shape = signature
        return self.replay.captured(signature) or self._streak >= CAPTURE_AFTER


def graph_chain(processors: Sequence[Processor], device: torch.device | str) -> Sequence[Processor]:
    """``processors`` as one :class:`GraphedChain` when they can be replayed on ``device``, else unchanged.

    They can when ``device`` is CUDA and every processor is ``stateless`` and hashable (the frozen
    dataclasses of :mod:`decoding.processors`): equal chains share one graph per logits shape across
    ``decode()`` calls (at most :data:`MAX_CHAINS` chains kept), so a new call captures nothing new.
    """
    if not ENABLED or torch.device(device).type != "cuda" or not processors:
        return processors
    if not all(getattr(type(p), "stateless", False) for p in processors):
        return processors
    key = tuple(processors)
    try:
        hash(key)
    except TypeError:
        return processors
    with _LOCK:
        chain = _CHAINS.pop(key, None) or GraphedChain(key)
        _CHAINS[key] = chain
        while len(_CHAINS) > MAX_CHAINS:
            _CHAINS.popitem(last=False)
    return [chain]
