"""Scale-out with ``torchrun``: one process per GPU (or CPU worker), samples sharded over ranks.

``torchrun --nproc-per-node N -m decoding eval SUITE --out DIR`` starts N processes with
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`init_world` joins them with
``torch.distributed`` (NCCL on CUDA, gloo on CPU). The runner splits a config's pending chunks
round-robin over the ranks and gathers every round's results on rank 0, which alone writes files.
Each chunk's generator is seeded from the chunk's sample indices, never from the rank, so the
samples are the same for any world size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (``size == 1``: no ``torch.distributed``)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order); ``None`` on the other ranks."""
        if self.size == 1:
            return [obj]
        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def rounds(
        self, items: list[Any], group: Callable[[Any], Hashable | None] = lambda _: None
    ) -> list[list[Any]]:
        """Split ``items`` over the ranks: ``rounds[r][k]`` is rank ``k``'s item in round ``r`` (or None).

        Items whose ``group(item)`` is not None must run in order on one rank (a sequential
        config: each chunk needs the state the previous one left); a whole group goes to the
        least loaded rank. The other items are dealt out one by one to the least loaded rank.
        """
        queues: list[list[Any]] = [[] for _ in range(self.size)]
        groups: dict[Hashable, list[Any]] = {}
        for it in items:
            key = group(it)
            if key is not None:
                groups.setdefault(key, []).append(it)
        for members in groups.values():
            min(queues, key=len).extend(members)
        for it in items:
            if group(it) is None:
                min(queues, key=len).append(it)
        n = max((len(q) for q in queues), default=0)
        return [[q[r] if r < len(q) else None for q in queues] for r in range(n)]


def init_world(device: str | torch.device = "cpu") -> tuple[World, torch.device]:
    """Join the process group that ``torchrun`` set up (if any) and pick this rank's device.

    Args:
        device: the requested device; ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun.

    Returns:
        ``(world, device)``.
    """
    device = torch.device(device)
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return World(rank=rank, size=size, local_rank=local, backend=backend), device


def shutdown(world: World) -> None:
    """Leave the process group (no-op for a single process)."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
