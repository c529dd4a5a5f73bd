"""On CUDA the image decode loop never waits for the GPU between steps (host syncs cost ~40% at batch 256)."""

from __future__ import annotations

import copy

import pytest
import torch

from decoding.core.loop import decode
from decoding.core.syncs import count_syncs
from decoding.models.image import SIZES, TRAIN_SCHEDULE, ImageDiffusionModel, schedule_from_config
from decoding.nn.unet import UNet
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.dpm_solver_pp import DPMSolverPP


@pytest.mark.gpu
def test_image_decode_does_not_synchronise_every_step() -> None:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = UNet(copy.deepcopy(SIZES["small"])).to(dev).eval()
    schedule = schedule_from_config(TRAIN_SCHEDULE)
    model = ImageDiffusionModel(net, schedule, "v")
    noise = torch.randn(8, 1, 28, 28, device=dev)
    labels = torch.arange(8, device=dev) % 10

    def run() -> None:
        decode(model, ContinuousProcess(schedule, DPMSolverPP(order=2)), noise, steps=20, cond=labels, seed=0)

    run()  # warm-up (first-call allocations)
    syncs = count_syncs(run)
    assert sum(syncs.values()) <= 3, syncs  # a few per run, not per step
