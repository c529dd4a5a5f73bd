"""The image API: exact end-to-end sampling on a known denoiser, seeds, grids, atomic outputs, the CLI."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from decoding.image_api import add_parser, make_grid, sample_images, solver_name, write_samples
from decoding.models.image import SIZES, TRAIN_SCHEDULE, ImageDiffusionModel, save_unet, schedule_from_config
from decoding.nn.unet import UNet
from tests.image.oracle import PointOracle


@pytest.fixture(scope="module")
def tiny_model() -> ImageDiffusionModel:
    torch.manual_seed(0)
    net = UNet(copy.deepcopy(SIZES["tiny"])).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ImageDiffusionModel(net, schedule_from_config(TRAIN_SCHEDULE))


@pytest.mark.parametrize("solver", ["ddim", "dpm_solver_pp", "unipc"])
def test_exact_denoiser_gives_its_point_for_every_solver(solver: str) -> None:
    """Data on one image: the probability-flow ODE maps all noise to it, whatever the solver."""
    target = torch.rand(1, 1, 28, 28) * 1.6 - 0.8
    model = ImageDiffusionModel(PointOracle(target, "v"), schedule_from_config(TRAIN_SCHEDULE), "v")
    out = sample_images(model, 3, class_label=2, solver=solver, steps=5, seed=0)
    assert out.images.shape == (3, 1, 28, 28)
    assert torch.allclose(out.images, target.expand(3, -1, -1, -1), atol=1e-4)
    assert out.nfe == 5.0 and out.settings["solver"] == solver_name(solver)
    guided = sample_images(model, 2, class_label=2, solver=solver, steps=5, guidance=3.0, seed=0)
    assert torch.allclose(guided.images, target.expand(2, -1, -1, -1), atol=1e-4) and guided.nfe == 10.0


def test_seed_reproduces_for_any_batch_size(tiny_model: ImageDiffusionModel) -> None:
    a = sample_images(tiny_model, 5, class_label=[0, 1, 2, 3, 4], steps=3, seed=7)
    b = sample_images(tiny_model, 5, class_label=[0, 1, 2, 3, 4], steps=3, seed=7, batch_size=2)
    c = sample_images(tiny_model, 5, class_label=[0, 1, 2, 3, 4], steps=3, seed=8)
    again = sample_images(tiny_model, 5, class_label=[0, 1, 2, 3, 4], steps=3, seed=7)
    assert torch.equal(a.images, again.images)  # same seed, same device, same batches: bitwise equal
    assert torch.allclose(a.images, b.images, atol=1e-5)  # other batches: same noise, float rounding only
    assert not torch.allclose(a.images, c.images)
    assert a.labels.tolist() == [0, 1, 2, 3, 4] and a.settings["class_label"] == [0, 1, 2, 3, 4]


def test_bad_input(tiny_model: ImageDiffusionModel) -> None:
    with pytest.raises(ValueError, match="class 10 is out of range"):
        sample_images(tiny_model, 2, class_label=10)
    with pytest.raises(ValueError, match="class -1 is out of range"):
        sample_images(tiny_model, 2, class_label=-1)
    with pytest.raises(ValueError, match="unknown solver 'euler_magic'"):
        sample_images(tiny_model, 2, solver="euler_magic")
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_images(tiny_model, 0)
    with pytest.raises(ValueError, match="one class label or n=3"):
        sample_images(tiny_model, 3, class_label=[1, 2])


def test_grid_and_atomic_outputs(tiny_model: ImageDiffusionModel, tmp_path: Path) -> None:
    out = sample_images(tiny_model, 6, class_label=None, steps=2, seed=0)
    grid = out.grid(nrow=3, padding=2, scale=1)
    assert grid.size == (3 * 30 + 2, 2 * 30 + 2) and grid.mode == "L"
    png, js = write_samples(out, tmp_path / "g.png", nrow=3, scale=2)
    assert Image.open(png).size == (2 * (3 * 30 + 2), 2 * (2 * 30 + 2))
    meta = json.loads(js.read_text())
    assert meta["seed"] == 0 and meta["steps"] == 2 and meta["class_label"] is None and meta["nfe_per_image"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "g.png"]  # no temporary files left
    with pytest.raises(ValueError, match=".png"):
        write_samples(out, tmp_path / "g.jpg")
    tiles = out.uint8()
    assert np.array_equal(np.array(make_grid(tiles[:1], padding=0)), tiles[0, 0].numpy())


def test_cli_writes_grid_and_settings(tiny_model: ImageDiffusionModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_unet(tiny_model.net, tmp_path / "zoo" / "fashion-tiny", {"prediction": "v", "schedule": TRAIN_SCHEDULE})
    monkeypatch.setenv("DECODING_MODELS", str(tmp_path / "zoo"))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "grid.png"
    args = parser.parse_args(["image", "--model", "fashion-tiny", "--class", "7", "--n", "4", "--solver", "dpm_solver_pp",
                              "--steps", "3", "--out", str(out)])
    assert args.func(args) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"] == "fashion-tiny" and meta["class_label"] == 7 and meta["solver"] == "dpmpp_2m"
    again = sample_images("fashion-tiny", 4, class_label=7, solver="dpmpp_2m", steps=3, seed=0)
    assert np.array_equal(np.array(Image.open(out)), np.array(again.grid(scale=2)))  # same seed, same images
