"""Checkpoints (config.json + safetensors) and the engine wrapper ImageDiffusionModel."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from decoding.core.types import State
from decoding.models.image import (
    SIZES,
    TRAIN_SCHEDULE,
    CheckpointError,
    ImageDiffusionModel,
    load_image_model,
    load_unet,
    save_unet,
    schedule_from_config,
)
from decoding.nn.unet import UNet
from decoding.solvers.schedules import DiscreteVPSchedule
from tests.image.oracle import PointOracle

META = {"prediction": "v", "schedule": TRAIN_SCHEDULE}


def random_tiny() -> UNet:
    torch.manual_seed(0)
    net = UNet(copy.deepcopy(SIZES["tiny"])).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def state(b: int = 2, t: float = 500.0, cond=None, schedule=None) -> State:
    g = torch.Generator().manual_seed(3)
    mem = {"schedule": schedule or schedule_from_config(TRAIN_SCHEDULE)}
    if cond is not None:
        mem["cond"] = cond
    return State(x=torch.randn(b, 1, 28, 28, generator=g), t=torch.full((b,), t, dtype=torch.float64),
                 done=torch.zeros(b, dtype=torch.bool), memory=mem)


def test_round_trip(tmp_path: Path) -> None:
    net = random_tiny()
    save_unet(net, tmp_path / "m", META)
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors"}
    loaded, config = load_unet(tmp_path / "m")
    x, lam, y = torch.randn(2, 1, 28, 28), torch.tensor([-3.0, 2.0]), torch.tensor([1, 10])
    assert torch.equal(loaded(x, lam, y), net(x, lam, y))
    assert config["weights_dtype"] == "float32" and config["schedule"] == TRAIN_SCHEDULE
    model = load_image_model(tmp_path / "m")
    assert model.prediction == "v" and model.schedule == schedule_from_config(TRAIN_SCHEDULE)


def test_bfloat16_storage(tmp_path: Path) -> None:
    net = random_tiny()
    save_unet(net, tmp_path, META, dtype=torch.bfloat16)
    loaded, config = load_unet(tmp_path)
    assert config["weights_dtype"] == "bfloat16"
    p, q = next(net.parameters()), next(loaded.parameters())
    assert q.dtype == torch.float32 and torch.equal(q, p.to(torch.bfloat16).float())


def test_mismatched_config_and_missing_files(tmp_path: Path) -> None:
    save_unet(random_tiny(), tmp_path, META)
    config = json.loads((tmp_path / "config.json").read_text())
    config["unet"]["channels"] = 16
    config["unet"]["head_dim"] = 16
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match .*shape mismatches"):
        load_unet(tmp_path)
    config["unet"]["num_res_blocks"] = 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing"):
        load_unet(tmp_path)
    config["prediction"] = "x1"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'prediction' must be one of"):
        load_unet(tmp_path)
    with pytest.raises(CheckpointError, match="no model 'no-such-model'"):
        load_unet("no-such-model")
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_unet(tmp_path)


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_wrapper_recovers_the_exact_x0_and_eps(prediction: str) -> None:
    target = torch.rand(1, 1, 28, 28) * 2 - 1
    schedule = schedule_from_config(TRAIN_SCHEDULE)
    model = ImageDiffusionModel(PointOracle(target, prediction), schedule, prediction)
    for t in (0.0, 250.5, 999.0):
        s = state(t=t)
        pred = model(s)
        alpha, sigma = float(schedule.alpha(t)), float(schedule.sigma(t))
        assert torch.allclose(pred.x0, target.expand(2, -1, -1, -1), atol=1e-2 if prediction == "eps" and t > 900 else 1e-4)
        assert torch.allclose(alpha * pred.x0 + sigma * pred.eps, s.x, atol=1e-4)


def test_bad_labels_and_schedule_mismatch() -> None:
    model = ImageDiffusionModel(random_tiny(), schedule_from_config(TRAIN_SCHEDULE))
    with pytest.raises(ValueError, match="class label 11 out of range"):
        model(state(cond=11))
    with pytest.raises(ValueError, match="one class label per row"):
        model(state(cond=torch.tensor([1, 2, 3])))
    with pytest.raises(ValueError, match="integers"):
        model(state(cond=torch.tensor([1.0, 2.0])))
    other = DiscreteVPSchedule("linear")
    with pytest.raises(ValueError, match="schedule"):
        model(state(schedule=other))
