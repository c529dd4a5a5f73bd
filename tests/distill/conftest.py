"""A tiny teacher and its distilled students, trained once per session on synthetic Fashion-MNIST-format data (CPU)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from decoding.cli.train import train_main
from tests.distill.helpers import tiny_teacher
from tests.train.helpers import fashion_folder

#: The skeleton's options of the smoke runs: a few steps of batch 8 on the CPU.
RUN = ["--batch-size", "8", "--device", "cpu", "--no-progress", "--val-every", "2", "--log-every", "1", "--val-limit", "16",
       "--val-batch", "8", "--warmup", "1", "--no-channels-last", "--threads", "1"]


@dataclass(frozen=True)
class Students:
    data: Path
    teacher: Path
    stage1: Path
    steps2: Path
    steps1: Path
    root: Path


@pytest.fixture(scope="session")
def students(tmp_path_factory: pytest.TempPathFactory) -> Students:
    """Stage 1 (3 steps), then the rounds 4 -> 2 and 2 -> 1 (3 steps each), as ``decoding train`` runs them."""
    root = tmp_path_factory.mktemp("distill")
    data = fashion_folder(root / "data", n_train=48, n_test=16)
    teacher = tiny_teacher(root / "teacher")
    common = ["--data", str(data), *RUN]
    stage1, steps2, steps1 = root / "stage1", root / "steps-2", root / "steps-1"
    assert train_main("distill-guided", ["--teacher", str(teacher), "--steps", "3", "--lr", "1e-3", "--w-max", "3",
                                         "--checkpoint", str(root / "ck1"), "--out", str(stage1), *common]) == 0
    assert train_main("distill-progressive", ["--teacher", str(stage1), "--teacher-steps", "4", "--steps", "3",
                                              "--checkpoint", str(root / "ck2"), "--out", str(steps2), *common]) == 0
    assert train_main("distill-progressive", ["--teacher", str(steps2), "--steps", "3", "--checkpoint", str(root / "ck3"),
                                              "--out", str(steps1), *common]) == 0
    return Students(data, teacher, stage1, steps2, steps1, root)
