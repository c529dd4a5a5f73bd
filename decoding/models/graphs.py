"""CUDA-graph replay of a fixed-shape tensor function (the image network's call inside ``decode()``).

At small batch a diffusion step is launch-bound: the UNet is a few hundred small kernels whose
launches cost more host time than the GPU needs to run them. :class:`GraphReplay` captures
``fn(*inputs)`` once per input signature (shapes, dtypes, device) in a
:class:`torch.cuda.CUDAGraph` and afterwards copies the new inputs into the captured (static)
buffers and replays the graph: one launch instead of hundreds, the same kernels, so the same
numbers as the eager call. The per-step values that change (the latents, the noise level
``lambda``, the labels) are graph *inputs*, so one graph serves every step of every grid.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from decoding.core.fallback import FallbackWarning, error_tail

WARMUP_CALLS = 3  # eager calls on a side stream before capture (cuDNN autotuning, lazy inits)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[Tensor, ...]
    output: Tensor


class GraphReplay:
    """``fn(*inputs) -> Tensor`` replayed as one CUDA graph per input signature.

    Args:
        fn: a function of CUDA tensors with no host synchronisation and no data-dependent shapes
            (what graph capture requires); it must read only its inputs and fixed state (weights).
        max_graphs: signatures kept (least recently used dropped); each holds its own memory.

    Calling it returns a fresh tensor (a copy of the graph's output buffer), so results of earlier
    calls are never overwritten by later replays. If capture fails (an op that cannot be captured)
    it warns once and calls ``fn`` eagerly from then on.
    """

    def __init__(self, fn: Callable[..., Tensor], max_graphs: int = 4) -> None:
        self.fn = fn
        self.max_graphs = int(max_graphs)
        self.failed = False
        self._graphs: OrderedDict[tuple, _Captured] = OrderedDict()

    def __len__(self) -> int:
        return len(self._graphs)

    def __call__(self, *inputs: Tensor) -> Tensor:
        if any(not isinstance(t, Tensor) or t.device.type != "cuda" for t in inputs):
            raise ValueError("GraphReplay needs CUDA tensors as inputs (call the function eagerly on other devices)")
        if self.failed:
            return self.fn(*inputs)
        key = self.signature(*inputs)
        entry = self._graphs.pop(key, None)
        if entry is None:
            try:
                entry = self._capture(inputs)
            except Exception as e:  # an op that cannot be captured: keep going eagerly
                warnings.warn(f"CUDA graph capture failed ({error_tail(e)}); running eagerly", FallbackWarning,
                              stacklevel=2)
                self.failed = True
                self._graphs.clear()
                return self.fn(*inputs)
        self._graphs[key] = entry
        while len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)
        for static, new in zip(entry.inputs, inputs, strict=True):
            static.copy_(new)
        entry.graph.replay()
        return entry.output.clone()

    @staticmethod
    def signature(*inputs: Tensor) -> tuple:
        """What a graph is kept by: the inputs' shapes, strides, dtypes and devices."""
        return tuple((tuple(t.shape), t.stride(), t.dtype, t.device) for t in inputs)

    def captured(self, signature: tuple) -> bool:
        """Whether a graph for inputs of this :meth:`signature` is kept (the next call replays it)."""
        return signature in self._graphs

    def _capture(self, inputs: tuple[Tensor, ...]) -> _Captured:
        static = tuple(t.clone() for t in inputs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_CALLS):
                self.fn(*static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.fn(*static)
        if not isinstance(out, Tensor):
            raise TypeError(f"the captured function must return one tensor, got {type(out).__name__}")
        return _Captured(graph, static, out)
