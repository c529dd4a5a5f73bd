"""Training of the image UNets: exact targets, a loss that falls, reproducible seeds, the CLI outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from decoding.models.image import TRAIN_SCHEDULE, schedule_from_config
from decoding.train.image import NoiseLevels, TrainConfig, diffusion_loss, learning_rate, main, train
from tests.image.oracle import PointOracle

HAVE_DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="apt-get install dataset-fashion-mnist")


def levels() -> NoiseLevels:
    return NoiseLevels(schedule_from_config(TRAIN_SCHEDULE), torch.device("cpu"))


def test_noise_levels_follow_the_schedule() -> None:
    sched = schedule_from_config(TRAIN_SCHEDULE)
    lv = levels()
    lam = lv.sample(20000, torch.Generator().manual_seed(0))
    lo, hi = float(sched.lambda_(999.0)), float(sched.lambda_(0.0))
    assert lo - 1e-5 <= float(lam.min()) and float(lam.max()) <= hi + 1e-5
    # t ~ U[0, 999]: the median noise level is lambda(499.5)
    assert abs(float(lam.median()) - float(sched.lambda_(499.5))) < 0.05


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_exact_network_has_zero_loss(prediction: str) -> None:
    """The noising in training and the conversion at sampling use the same convention."""
    target = torch.rand(1, 1, 28, 28) * 2 - 1
    x0 = target.expand(16, -1, -1, -1)
    oracle = PointOracle(target, prediction)
    g = torch.Generator().manual_seed(0)
    loss = diffusion_loss(oracle, x0, torch.zeros(16, dtype=torch.long), levels(), g, prediction, 0.1, 10, False)
    assert float(loss) < 1e-8
    wrong = PointOracle(target, "eps" if prediction == "v" else "v")
    assert float(diffusion_loss(wrong, x0, torch.zeros(16, dtype=torch.long), levels(), g, prediction, 0.1, 10, False)) > 1e-2


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert learning_rate(0, 100, cfg) == pytest.approx(1e-4)
    assert learning_rate(9, 100, cfg) == pytest.approx(1e-3)
    assert learning_rate(100, 100, cfg) == pytest.approx(1e-4)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown model size"):
        TrainConfig(sizes=["huge"]).check()
    with pytest.raises(ValueError, match=r"\{size\}"):
        TrainConfig(sizes=["large", "small"], out="models/x").check()
    with pytest.raises(ValueError, match="--steps or --minutes"):
        TrainConfig(steps=None, minutes=None).check()
    assert main(["--size", "tiny", "--steps", "1", "--device", "cpu", "--data-root", "/nonexistent"]) == 2


@needs_data
def test_tiny_training_run_writes_a_checkpoint_and_is_reproducible(tmp_path: Path) -> None:
    common = dict(sizes=["tiny"], minutes=None, batch_size=16, lr=3e-3, warmup=4, device="cpu", limit_data=64, seed=1)
    a = train(TrainConfig(out=str(tmp_path / "a-{size}"), steps=24, log_every=4, **common))["tiny"]
    assert {p.name for p in a.iterdir()} == {"config.json", "model.safetensors", "loss.png", "train_log.json"}
    log = json.loads((a / "train_log.json").read_text())
    losses = [v for _, v in log["loss_history"]]
    assert log["steps"] == 24 and len(losses) == 6
    assert losses[-1] < 0.85 * losses[0]  # it learns (a wrong target or noising would not fall)
    config = json.loads((a / "config.json").read_text())
    assert config["prediction"] == "v" and config["schedule"] == TRAIN_SCHEDULE and config["training"]["steps"] == 24
    assert (a / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # same seed, same weights
    b = train(TrainConfig(out=str(tmp_path / "b-{size}"), steps=3, log_every=3, **common))["tiny"]
    c = train(TrainConfig(out=str(tmp_path / "c-{size}"), steps=3, log_every=3, **common))["tiny"]
    wb, wc = load_file(str(b / "model.safetensors")), load_file(str(c / "model.safetensors"))
    assert all(torch.equal(wb[k], wc[k]) for k in wb)
