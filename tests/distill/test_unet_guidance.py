"""The w-conditioned UNet option: old checkpoints and configs unchanged, a student built from a teacher starts as it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from decoding.distill.student import student_from_teacher
from decoding.models.image import load_unet, models_root
from decoding.nn.embeddings import GuidanceEmbedding
from decoding.nn.unet import UNetConfig
from tests.distill.helpers import random_unet, tiny_teacher

pytestmark = pytest.mark.one_thread


def test_plain_configs_and_shipped_checkpoints_are_unchanged(tmp_path: Path) -> None:
    assert "guidance_embedding" not in UNetConfig().to_dict()
    folder = tiny_teacher(tmp_path / "t")
    assert "guidance_embedding" not in json.loads((folder / "config.json").read_text())["unet"]
    net, _ = load_unet(folder)
    assert net.guidance_emb is None and not any(k.startswith("guidance_emb") for k in net.state_dict())
    shipped = models_root() / "fashion-small"
    if (shipped / "model.safetensors").is_file():  # a real old checkpoint loads strictly, as before
        net, _ = load_unet(shipped)
        assert net.guidance_emb is None


def test_student_starts_as_the_teacher_at_every_w() -> None:
    teacher = random_unet(seed=1)
    student = student_from_teacher(teacher).eval()
    assert student.cfg.guidance_embedding and isinstance(student.guidance_emb, GuidanceEmbedding)
    g = torch.Generator().manual_seed(0)
    x, lam, y = torch.randn(4, 1, 28, 28, generator=g), torch.tensor([-4.0, -1.0, 0.5, 3.0]), torch.tensor([0, 3, 9, 10])
    with torch.no_grad():
        want = teacher(x, lam, y)
        for w in (0.0, 0.5, 4.0):
            assert torch.equal(student(x, lam, y, torch.full((4,), w)), want)
    assert student_from_teacher(student).state_dict().keys() == student.state_dict().keys()  # stage 2: a plain copy


def test_guidance_argument_is_checked_both_ways() -> None:
    plain, guided = random_unet(), random_unet(guidance=True)
    x, lam, y = torch.zeros(1, 1, 28, 28), torch.zeros(1), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="pass guidance"):
        guided(x, lam, y)
    with pytest.raises(ValueError, match="takes no guidance"):
        plain(x, lam, y, torch.zeros(1))
    with torch.no_grad():  # the embedding changes the output once it is trained (here: random)
        a, b = guided(x, lam, y, torch.zeros(1)), guided(x, lam, y, torch.full((1,), 2.0))
    assert not torch.allclose(a, b)
    assert UNetConfig.from_dict(guided.cfg.to_dict()).guidance_embedding
