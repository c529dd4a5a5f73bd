"""The image task (decoding.train.image): exact targets, the noise-level laws, a loss that falls."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from decoding.cli.train import train_main
from decoding.models.image import TRAIN_SCHEDULE, load_unet, schedule_from_config
from decoding.train.image import ImageConfig, NoiseLevels, alpha_sigma, diffusion_loss
from tests.image.oracle import PointOracle
from tests.train.helpers import fashion_folder


def levels(kind: str = "cosine") -> NoiseLevels:
    return NoiseLevels(schedule_from_config(TRAIN_SCHEDULE), torch.device("cpu"), kind)


def test_noise_levels_follow_the_schedule() -> None:
    sched = schedule_from_config(TRAIN_SCHEDULE)
    lam = levels().sample(20000, torch.Generator().manual_seed(0))
    lo, hi = float(sched.lambda_(999.0)), float(sched.lambda_(0.0))
    assert lo - 1e-5 <= float(lam.min()) and float(lam.max()) <= hi + 1e-5
    # t ~ U[0, 999]: the median noise level is lambda(499.5)
    assert abs(float(lam.median()) - float(sched.lambda_(499.5))) < 0.05


def test_lognormal_levels_are_edm_s_law() -> None:
    """-lambda = ln sigma_VE ~ N(p_mean, p_std^2), clamped to the schedule: check mean, s.d. and the clamp."""
    lv = NoiseLevels(schedule_from_config(TRAIN_SCHEDULE), torch.device("cpu"), "lognormal", p_mean=-0.86, p_std=1.2)
    lam = lv.sample(200_000, torch.Generator().manual_seed(1)).double()
    inside = lam[(lam > lv.lo) & (lam < lv.hi)]
    assert abs(float(inside.mean()) - 0.86) < 0.02 and abs(float(inside.std()) - 1.2) < 0.02  # clamps: < 0.1 %
    assert float(lam.min()) >= lv.lo and float(lam.max()) <= lv.hi
    share_clamped_high = float((lam >= lv.hi).double().mean())
    exact = 0.5 * math.erfc((lv.hi - 0.86) / (1.2 * math.sqrt(2)))
    assert abs(share_clamped_high - exact) < 4 * math.sqrt(exact / 200_000) + 1e-6
    with pytest.raises(ValueError, match="noise levels"):
        NoiseLevels(schedule_from_config(TRAIN_SCHEDULE), torch.device("cpu"), "uniform")


@pytest.mark.parametrize("prediction", ["v", "eps"])
@pytest.mark.parametrize("kind", ["cosine", "lognormal"])
def test_exact_network_has_zero_loss(prediction: str, kind: str) -> None:
    """The noising in training and the conversion at sampling use the same convention."""
    target = torch.rand(1, 1, 28, 28) * 2 - 1
    x0 = target.expand(16, -1, -1, -1)
    oracle = PointOracle(target, prediction)
    g = torch.Generator().manual_seed(0)
    loss = diffusion_loss(oracle, x0, torch.zeros(16, dtype=torch.long), levels(kind), g, prediction, 0.1, 10)
    assert float(loss) < 1e-8
    wrong = PointOracle(target, "eps" if prediction == "v" else "v")
    assert float(diffusion_loss(wrong, x0, torch.zeros(16, dtype=torch.long), levels(kind), g, prediction, 0.1, 10)) > 1e-2


def test_sigma_data_weight_is_edm_s_x0_weight() -> None:
    """Weighted v-error == EDM's lambda(sigma_e) * |D(x) - x0|^2 with D = alpha x_t - sigma v (arXiv:2206.00364, eq. 8)."""
    seen: dict[str, torch.Tensor] = {}

    def net(xt: torch.Tensor, lam: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen["xt"], seen["lam"] = xt, lam
        seen["out"] = torch.randn(xt.shape, generator=torch.Generator().manual_seed(7))
        return seen["out"]

    x0 = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    labels = torch.zeros(64, dtype=torch.long)
    sd = 0.706
    loss = diffusion_loss(net, x0, labels, levels("lognormal"), torch.Generator().manual_seed(2), "v", 0.0, 10, sigma_data=sd)
    alpha, sigma = (a.view(-1, 1, 1, 1).double() for a in alpha_sigma(seen["lam"]))
    x0_hat = alpha * seen["xt"].double() - sigma * seen["out"].double()
    sigma_e = sigma / alpha
    edm = ((sigma_e**2 + sd**2) / (sigma_e * sd) ** 2 * (x0_hat - x0.double()) ** 2).mean()
    assert float(loss) == pytest.approx(float(edm), rel=1e-5)
    plain = diffusion_loss(net, x0, labels, levels(), torch.Generator().manual_seed(2), "v", 0.0, 10)
    assert float(plain) != pytest.approx(float(loss), rel=1e-3)
    with pytest.raises(ValueError, match="--sigma-data"):
        ImageConfig(prediction="eps", sigma_data=0.7).check()


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown UNet size"):
        ImageConfig(size="huge").check()
    with pytest.raises(ValueError, match="--prediction"):
        ImageConfig(prediction="x0").check()
    with pytest.raises(ValueError, match="--noise-levels"):
        ImageConfig(noise_levels="edm").check()
    assert ImageConfig(size="small", channels=48, num_res_blocks=2).unet_config().channels == 48


def test_tiny_run_learns_and_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    data = fashion_folder(tmp_path / "data", n_train=64, n_test=32)
    out = tmp_path / "out"
    args = ["--steps", "40", "--batch-size", "16", "--device", "cpu", "--no-progress", "--data", str(data),
            "--val-every", "20", "--log-every", "10", "--checkpoint", str(tmp_path / "ck"), "--out", str(out),
            "--noise-levels", "lognormal", "--channels", "16"]
    assert train_main("fashion-tiny", args) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "loss.png", "train_log.json"}
    log = json.loads((out / "train_log.json").read_text())
    valid = [r["loss"] for r in log["history"]["valid"]]
    assert [r["step"] for r in log["history"]["valid"]] == [0, 20, 40]
    assert valid[-1] < 0.8 * valid[0]  # it learns (a wrong target or noising would not fall)
    config = json.loads((out / "config.json").read_text())
    assert config["prediction"] == "v" and config["schedule"] == TRAIN_SCHEDULE and config["training"]["steps"] == 40
    assert config["unet"]["channels"] == 16 and config["weights_dtype"] == "bfloat16"
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    net, _ = load_unet(out)
    assert net.cfg.channels == 16
