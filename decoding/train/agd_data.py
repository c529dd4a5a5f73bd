"""The training set of adapter guidance distillation: CFG-guided trajectories of the frozen base model (arXiv 2503.07274, sec. 3).

AGD trains on the states that guided sampling actually visits, not on noised data: each trajectory
starts from Gaussian noise with a class ``y`` and a CFG scale ``s ~ U[lo, hi]`` of its own and is
solved with the CFG-guided base model (DPM-Solver++(2M), the engine's default solver, on a
``logsnr`` grid). The batches of trajectories alternate between grids of ``steps`` steps (whose
points contain those of ``steps / 2``: the grids sampling uses) and grids of a random number of
steps in ``[2, 2 steps]`` (other noise levels, so no single grid is all the adapters see). The
paper samples with many more steps; this is cheaper and covers what the engine's solvers visit.
Every visited state ``(z_t, lambda_t, y, s)`` becomes one
example whose target is the guided prediction there, ``v_u + s (v_c - v_u)`` (the base model's
``v``; conditional and unconditional rows in one call, :class:`~decoding.distill.targets.CFGTeacher`
with Meng et al.'s ``w = s - 1``). No image data is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from decoding.core.loop import decode
from decoding.distill.targets import CFGTeacher
from decoding.models.image import ImageDiffusionModel
from decoding.nn.unet import UNet
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.dpm_solver_pp import DPMSolverPP
from decoding.solvers.schedules import VPSchedule


@dataclass(frozen=True)
class Trajectories:
    """``N`` examples (one per visited state): ``z`` ``(N, C, H, W)``, ``lam``, ``scale`` ``(N,)`` float32,
    ``labels`` ``(N,)`` long and the CFG targets ``v`` ``(N, C, H, W)``, on one device."""

    z: Tensor
    lam: Tensor
    labels: Tensor
    scale: Tensor
    v: Tensor

    def __len__(self) -> int:
        return int(self.z.shape[0])


class _RecordingCFG(ImageDiffusionModel):
    """The base model under CFG with one scale per row; records every call's inputs and guided output."""

    def __init__(self, net: UNet, schedule: VPSchedule) -> None:
        super().__init__(net, schedule, prediction="v")
        self.teacher = CFGTeacher(self.forward, net.cfg.null_class)
        self.scales: Tensor | None = None
        self.records: list[tuple[Tensor, ...]] = []

    def network(self, x: Tensor, lam: Tensor, labels: Tensor) -> Tensor:
        assert self.scales is not None
        z = x.to(self.dtype)
        v = self.teacher(z, lam.float(), labels, self.scales - 1.0).float()
        self.records.append((x.float(), lam.float(), labels, self.scales, v))
        return v


@torch.no_grad()
def sample_trajectories(
    net: UNet, schedule: VPSchedule, n: int, steps: int, scale_range: tuple[float, float], seed: int,
    batch: int = 1024, progress: bool = False,
) -> Trajectories:
    """``n`` CFG-guided DPM-Solver++(2M) trajectories from ``net`` (on its device): ``steps`` steps for
    even batches, a random number in ``[2, 2 steps]`` for odd ones (see the module docstring).

    Classes cycle ``0..K-1`` over the trajectories (then shuffled), scales are uniform on
    ``scale_range``; all draws come from ``seed`` (the same seed on the same device gives the same set).
    """
    if n < 1 or steps < 1 or batch < 1:
        raise ValueError(f"need n, steps and batch >= 1, got n={n}, steps={steps}, batch={batch}")
    device = next(net.parameters()).device
    cpu = torch.Generator().manual_seed(int(seed))
    k = net.cfg.num_classes
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=cpu)]
    lo, hi = scale_range
    scales = lo + (hi - lo) * torch.rand(n, generator=cpu)
    model = _RecordingCFG(net, schedule)
    process = ContinuousProcess(schedule, DPMSolverPP(order=2), spacing="logsnr")
    g = torch.Generator(device=device).manual_seed(int(seed))
    shape = (net.cfg.in_channels, net.cfg.image_size, net.cfg.image_size)
    chunks = range(0, n, batch)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="CFG trajectories", unit="batch")
    for k_i, lo_i in enumerate(chunks):
        b = min(batch, n - lo_i)
        grid_steps = steps if k_i % 2 == 0 else int(torch.randint(2, 2 * steps + 1, (1,), generator=cpu))
        model.scales = scales[lo_i : lo_i + b].to(device)
        noise = torch.randn((b, *shape), generator=g, device=device)
        decode(model, process, noise, steps=grid_steps, generator=g, cond=labels[lo_i : lo_i + b].to(device))
    cols = [torch.cat(c) for c in zip(*model.records, strict=True)]
    return Trajectories(*cols)
