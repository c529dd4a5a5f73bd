"""AGD (arXiv 2503.07274): the Fourier embedding, adapters off = the base model bit for bit, one call per step,
a toy training run that moves the adapted network towards CFG, and the errors of a wrong set-up."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import decoding as dc
from decoding.api.options import OptionError
from decoding.cli.main import main as cli_main
from decoding.cli.train import train_main
from decoding.nn.guidance_adapter import AdapterConfig, FourierFeatures, GuidanceAdapters
from decoding.nn.unet import UNet
from tests.distill.helpers import random_unet, tiny_teacher

pytestmark = pytest.mark.one_thread

RUN = ["--trajectories", "32", "--val-trajectories", "8", "--traj-steps", "6", "--batch-size", "32", "--device", "cpu",
       "--no-progress", "--log-every", "5", "--warmup", "2", "--no-channels-last", "--threads", "1"]


@dataclass(frozen=True)
class Trained:
    base: Path
    adapters: Path
    root: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("agd")
    base = tiny_teacher(root / "base")
    out = root / "base-agd"  # the default folder of agd without adapters=
    assert train_main("agd-fashion", ["--base", str(base), "--steps", "30", "--lr", "3e-3", "--val-every", "10",
                                      "--checkpoint", str(root / "ck"), "--out", str(out), *RUN]) == 0
    return Trained(base, out, root)


def _unet_inputs(net: UNet, b: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, 28, 28, generator=g)
    return x, torch.linspace(-3, 3, b), torch.tensor([1, 4, 10])[:b], torch.tensor([1.5, 3.0, 4.5])[:b]


def test_fourier_features_are_seeded_cosines() -> None:
    f = FourierFeatures(16, std=2.0, seed=7)
    g = torch.Generator().manual_seed(7)
    freqs = 2.0 * torch.randn(16, generator=g)
    phases = torch.rand(16, generator=g)
    s = torch.tensor([0.0, 1.0, 2.5, 7.25])
    expect = torch.cos(2 * math.pi * (s.double()[:, None] * freqs.double() + phases.double()))
    assert torch.allclose(f(s).double(), expect, atol=2e-5)
    assert f(s).shape == (4, 16)
    assert not torch.allclose(f(s), FourierFeatures(16, std=2.0, seed=8)(s))
    assert not torch.allclose(f(s[1:2]), f(s[2:3]))  # distinct scales, distinct features
    assert set(f.state_dict()) == {"frequencies", "phases"}  # saved with the adapters


def test_new_adapters_change_nothing_and_trained_ones_do() -> None:
    net = random_unet(0)
    adapters = GuidanceAdapters(AdapterConfig(net.stage_widths(), 4 * net.cfg.channels, hidden=16, fourier=8))
    x, lam, y, s = _unet_inputs(net)
    with torch.no_grad():
        plain = net(x, lam, y)
        assert torch.equal(net(x, lam, y, s, adapters=adapters), plain)
        for head in adapters.heads:
            head[-1].bias.normal_(0, 0.1)
        moved = net(x, lam, y, s, adapters=adapters)
    assert not torch.allclose(moved, plain)
    assert not torch.allclose(moved[:1], net(x[:1], lam[:1], y[:1], s[1:2], adapters=adapters))  # the scale matters
    assert torch.equal(net(x, lam, y), plain)  # the base is untouched
    with pytest.raises(ValueError, match="read the CFG scale"):
        net(x, lam, y, adapters=adapters)


def test_adapters_are_about_two_percent_of_fashion_large() -> None:
    from decoding.models.image import SIZES

    large = UNet(SIZES["large"])
    adapters = GuidanceAdapters(AdapterConfig(large.stage_widths(), 4 * large.cfg.channels))
    ratio = adapters.num_parameters() / sum(p.numel() for p in large.parameters())
    assert 0.015 < ratio < 0.025, ratio
    assert 4 * adapters.num_parameters() < 16 * 2**20


def test_training_moves_the_adapted_network_towards_cfg(trained: Trained) -> None:
    """Validation distance to the CFG targets: step 0 (zero-initialised adapters) is exactly the adapters-off
    distance; 30 steps lower it (measured 0.7758 -> 0.7281, -6%)."""
    log = json.loads((trained.adapters / "train_log.json").read_text())
    valid = log["history"]["valid"]
    assert valid[0]["step"] == 0 and valid[0]["loss_raw"] == valid[0]["adapters_off"]
    assert valid[-1]["loss"] < 0.97 * valid[0]["adapters_off"], valid


def test_the_folder_holds_only_the_adapters_with_a_card(trained: Trained) -> None:
    files = {p.name for p in trained.adapters.iterdir()}
    assert {"config.json", "adapters.safetensors", "README.md", "train_log.json", "loss.png"} <= files
    weights = load_file(str(trained.adapters / "adapters.safetensors"))
    assert weights and not any(k.startswith(("down.", "up.", "mid.", "stem")) for k in weights)
    config = json.loads((trained.adapters / "config.json").read_text())
    assert config["kind"] == "guidance-adapters" and config["scale_range"] == [1.0, 5.0]
    assert "arXiv 2503.07274" in (trained.adapters / "README.md").read_text()


def test_agd_is_one_call_per_step_with_every_solver(trained: Trained) -> None:
    h = dc.load(str(trained.base))
    for solver in ("ddim", "dpmpp_2m", "unipc_bh2"):
        agd = dc.generate(h, n=2, class_label=[3, 5], steps=4, solver=solver, guidance=["agd:3"], seed=1)
        cfg = dc.generate(h, n=2, class_label=[3, 5], steps=4, solver=solver, guidance=["cfg:3"], seed=1)
        assert agd.nfe == [4.0, 4.0] and cfg.nfe == [8.0, 8.0]
        assert agd.settings["guidance"] == ["agd:3"]
    plain = dc.generate(h, n=2, class_label=[3, 5], steps=4, seed=1)
    assert not torch.equal(plain.images, agd.images)


def test_adapters_off_is_the_base_model_bit_for_bit(trained: Trained) -> None:
    h = dc.load(str(trained.base))
    before = dc.generate(h, n=2, class_label=[3, 5], steps=4, seed=1)
    dc.generate(h, n=2, class_label=[3, 5], steps=4, seed=1, guidance=[dc.AGD(2.5, adapters=str(trained.adapters))])
    after = dc.generate(h, n=2, class_label=[3, 5], steps=4, seed=1)
    assert torch.equal(before.images, after.images)


def test_cli_guidance_agd(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert cli_main(["generate", str(trained.base), "--class", "2", "--n", "2", "--steps", "3", "--guidance", "agd:2",
                     "--out", str(out)]) == 0
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["guidance"] == ["agd:2"]


def test_resumed_run_equals_the_uninterrupted_one(trained: Trained, tmp_path: Path) -> None:
    args = ["--base", str(trained.base), "--steps", "4", *RUN, "--val-every", "2", "--no-export"]
    assert train_main("agd-fashion", [*args, "--checkpoint", str(tmp_path / "a")]) == 0
    assert train_main("agd-fashion", [*args, "--checkpoint", str(tmp_path / "b"), "--stop-at", "2"]) == 0
    assert train_main("agd-fashion", [*args, "--checkpoint", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (load_file(str(next((tmp_path / k).glob("*.safetensors")))) for k in ("a", "b"))
    weights = [k for k in a if k.startswith(("model/", "ema/"))]
    assert weights and all(torch.equal(a[k], b[k]) for k in weights)


def test_wrong_set_ups_are_clear_errors(trained: Trained, tmp_path: Path) -> None:
    h = dc.load(str(trained.base))
    gen = lambda handle, g, **kw: dc.generate(handle, n=1, steps=2, guidance=[g], **{"class_label": 1, **kw})  # noqa: E731
    with pytest.raises(OptionError, match=r"no AGD adapters for .* does not exist; train them with `decoding train agd-fashion"):
        gen(h, f"agd:2,adapters={tmp_path / 'nowhere'}")
    other = dc.load(str(tiny_teacher(tmp_path / "other", seed=1)))  # same architecture, other weights, no adapters
    with pytest.raises(OptionError, match="no AGD adapters"):
        gen(other, "agd:2")
    with pytest.raises(OptionError, match="fingerprint mismatch"):
        gen(other, f"agd:2,adapters={trained.adapters}")
    config = json.loads((trained.adapters / "config.json").read_text())
    config["base"]["unet"]["channels"] = 16
    wrong = tmp_path / "wrong-arch"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps(config))
    (wrong / "adapters.safetensors").write_bytes((trained.adapters / "adapters.safetensors").read_bytes())
    with pytest.raises(OptionError, match="another architecture"):
        gen(h, f"agd:2,adapters={wrong}")
    with pytest.raises(OptionError, match=r"trained for CFG scales 1 to 5"):
        gen(h, "agd:7")
    with pytest.raises(OptionError, match="combines with no other guidance"):
        dc.generate(h, n=1, steps=2, class_label=1, guidance=["agd:2", "pag:1"])
    with pytest.raises(OptionError, match="need class labels"):
        dc.generate(h, n=1, steps=2, guidance=["agd:2"])
    with pytest.raises(ValueError, match="--default-scale"):
        train_main("agd-fashion", ["--base", str(trained.base), "--default-scale", "9", "--steps", "1", *RUN,
                                   "--checkpoint", str(tmp_path / "x")])


def test_training_examples_are_the_states_and_predictions_of_cfg_sampling() -> None:
    from decoding.core.loop import decode
    from decoding.models.image import TRAIN_SCHEDULE, ImageDiffusionModel, schedule_from_config
    from decoding.processes.continuous import ContinuousProcess
    from decoding.solvers.dpm_solver_pp import DPMSolverPP
    from decoding.solvers.parameterization import velocity
    from decoding.train.agd_data import sample_trajectories
    from decoding.wrappers.guidance import CFG, GuidedModel

    net, schedule = random_unet(0), schedule_from_config(TRAIN_SCHEDULE)
    data = sample_trajectories(net, schedule, n=4, steps=3, scale_range=(2.5, 2.5), seed=5)
    assert len(data) == 12 and torch.equal(data.scale, torch.full((12,), 2.5))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    guided = GuidedModel(ImageDiffusionModel(net, schedule), net.cfg.null_class, cfg=CFG(2.5))

    def record(state):
        pred = guided(state)
        a, s = schedule.alpha(state.t[:1]).item(), schedule.sigma(state.t[:1]).item()
        seen.append((state.x, velocity(pred, state.x, a, s)))
        return pred

    noise = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    decode(record, ContinuousProcess(schedule, DPMSolverPP(order=2), spacing="logsnr"), noise, steps=3, cond=data.labels[:4])
    z, v = (torch.cat(c) for c in zip(*seen, strict=True))
    assert torch.allclose(data.z, z, atol=1e-5) and torch.allclose(data.v, v, atol=1e-4)
    assert torch.equal(data.labels[4:8], data.labels[:4])  # one trajectory's labels at every step


def test_adapters_stay_float32_under_a_bfloat16_base(trained: Trained) -> None:
    from decoding.api.image import guided
    from decoding.wrappers.agd import AGD

    h = dc.load(str(trained.base), dtype=torch.bfloat16)
    model = guided(h, [AGD(2.0)])
    assert model.dtype == torch.bfloat16 and model.adapters.fourier.frequencies.dtype == torch.float32
    out = dc.generate(h, n=2, class_label=[1, 2], steps=3, guidance=["agd:2"], seed=0)
    assert out.nfe == [3.0, 3.0] and bool(torch.isfinite(out.images).all())


def test_loading_the_adapter_folder_as_a_model_says_how_to_use_it(trained: Trained) -> None:
    with pytest.raises(ValueError, match=r"AGD guidance adapters, not a model: load .*base and sample with guidance=\['agd"):
        dc.load(str(trained.adapters))
