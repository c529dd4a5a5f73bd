"""``generate`` with image diffusion models: exact sampling on a known denoiser, seeds, CFG as a wrapper, grids, files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import decoding as dc
from decoding.api.generation import make_grid
from decoding.api.image import image_handle, solver_name
from decoding.core.types import State
from decoding.models.image import TRAIN_SCHEDULE, ImageDiffusionModel, save_unet, schedule_from_config
from decoding.wrappers.guidance import CFG, GuidedModel
from tests.api.fixtures import tiny_unet_model
from tests.image.oracle import PointOracle


def handle(model: ImageDiffusionModel, name: str = "tiny"):
    return image_handle(model, name, {}, model.device)


@pytest.fixture(scope="module")
def tiny():
    return handle(tiny_unet_model())


@pytest.mark.parametrize("solver", ["ddim", "dpm_solver_pp", "unipc"])
def test_exact_denoiser_gives_its_point_for_every_solver(solver: str) -> None:
    """Data on one image: the probability-flow ODE maps all noise to it, whatever the solver (guided or not)."""
    target = torch.rand(1, 1, 28, 28) * 1.6 - 0.8
    h = handle(ImageDiffusionModel(PointOracle(target, "v"), schedule_from_config(TRAIN_SCHEDULE), "v"))
    out = dc.generate(h, n=3, class_label=2, solver=solver, steps=5, seed=0)
    assert out.images.shape == (3, 1, 28, 28) and out.kind == "image-diffusion"
    assert torch.allclose(out.images, target.expand(3, -1, -1, -1), atol=1e-4)
    assert out.nfe == [5.0] * 3 and out.settings["solver"] == solver_name(solver)
    guided = dc.generate(h, n=2, class_label=2, solver=solver, steps=5, guidance=[dc.CFG(3.0)], seed=0)
    assert torch.allclose(guided.images, target.expand(2, -1, -1, -1), atol=1e-4)
    assert guided.nfe == [10.0, 10.0] and guided.settings["guidance"] == ["cfg:3"]  # one batched call of 2B rows


def test_cfg_wrapper_is_the_combination_of_two_predictions(tiny) -> None:
    """w = 1 is the conditional model, w = 0 the unconditional one, any w the line through them."""
    model = tiny.model
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    state = State(x=x, t=torch.full((3,), 500.0, dtype=torch.float64), done=torch.zeros(3, dtype=torch.bool),
                  memory={"cond": torch.tensor([1, 4, 7]), "schedule": model.schedule})
    cond = model(state)
    uncond = model(State(x=x, t=state.t, done=state.done, memory={**state.memory, "cond": None}))
    for w in (0.0, 1.0, 2.5):
        g = GuidedModel(model, model.null_label, cfg=CFG(w))(state)
        assert torch.allclose(g.x0, uncond.x0 + w * (cond.x0 - uncond.x0), atol=1e-5)
        assert torch.allclose(g.eps, uncond.eps + w * (cond.eps - uncond.eps), atol=1e-5)
        assert g.nfe.tolist() == [2.0] * 3
    assert torch.allclose(GuidedModel(model, model.null_label, cfg=CFG(1.0))(state).x0, cond.x0, atol=1e-5)


def test_seed_reproduces_for_any_batch_size(tiny) -> None:
    labels = [0, 1, 2, 3, 4]
    a = dc.generate(tiny, n=5, class_label=labels, steps=3, seed=7)
    b = dc.generate(tiny, n=5, class_label=labels, steps=3, seed=7, batch_size=2)
    c = dc.generate(tiny, n=5, class_label=labels, steps=3, seed=8)
    again = dc.generate(tiny, n=5, class_label=labels, steps=3, seed=7)
    assert torch.equal(a.images, again.images)  # same seed, same device, same batches: bitwise equal
    assert torch.allclose(a.images, b.images, atol=1e-5)  # other batches: same noise, float rounding only
    assert not torch.allclose(a.images, c.images)
    assert a.labels.tolist() == labels and a.settings["class_label"] == labels


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        (None, dict(class_label=10), "class 10 is out of range"),
        (None, dict(class_label=-1), "class -1 is out of range"),
        (None, dict(solver="euler_magic"), "unknown solver 'euler_magic'"),
        (None, dict(n=0), "n must be a whole number >= 1"),
        (None, dict(n=3, class_label=[1, 2]), "one class label or n=3"),
        (None, dict(spacing="cubic"), "unknown spacing"),
        (None, dict(guidance=["cfg:2"]), "need class labels"),
        (None, dict(class_label=1, guidance=["pagg:2"]), "unknown guidance 'pagg:2'"),
        (None, dict(class_label=1, guidance=["cfg:2", "cfg:3"]), "lists CFG twice"),
        (None, dict(class_label=1, guidance=["cfg:2", "cfgpp:0.5"]), "does not combine"),
        (None, dict(class_label=1, guidance=["pag:2,layers=mid"]), "no self-attention layer named 'mid'"),
        (None, dict(class_label=1, guidance=["cfg:2,scale=3"]), "unknown guidance"),
        (None, dict(class_label=1, guidance=["cfgpp:1.5"]), r"lambda must lie in \[0, 1\]"),
        (None, dict(class_label=1, guidance=["stitch:radd-brown:0.5"]), "needs an image diffusion model"),
        (None, dict(class_label=1, guidance=["cfg:x"]), "write cfg:SCALE"),
        (None, dict(class_label=1, guidance=["stitch:0.4"]), "stitch needs the small model's name"),
        (None, dict(class_label=1, guidance=["cfg:inf"]), "CFG scale must be a finite number"),
        (None, dict(class_label=1, guidance=["pag:nan"]), "PAG scale must be a finite number"),
        (None, dict(class_label=1, guidance=["cfg:1e30"]), "diverged"),
        (None, dict(class_label=1, guidance=["cfg:3,interval=0.2-0.8"], steps=4), "the interval holds none of the 4 times"),
        (None, dict(seed=-(2**64)), "seed must be a whole number"),
        (None, dict(class_label=1, guidance=[dc.CFG(2.0)], solver_options={"warp": 2}), "bad options for solver 'dpmpp_2m'"),
        ("a cat", {}, "takes class_label=..., not a prompt"),
        (None, dict(max_new_tokens=3), "option 'max_new_tokens' does not apply to image-diffusion models"),
        (None, dict(sampling=dc.Sampling(temperature=0.5)), "sampling.temperature does not apply to image-diffusion"),
        (None, dict(grammar="json"), "option 'grammar' does not apply to image-diffusion models"),
    ],
)
def test_bad_input(tiny, prompt, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        dc.generate(tiny, prompt, **kwargs)


def test_grid_and_atomic_outputs(tiny, tmp_path: Path) -> None:
    out = dc.generate(tiny, n=6, steps=2, seed=0)
    grid = out.grid(nrow=3, padding=2, scale=1)
    assert grid.size == (3 * 30 + 2, 2 * 30 + 2) and grid.mode == "L"
    png, js = out.save(tmp_path / "g.png", nrow=3, scale=2)
    assert Image.open(png).size == (2 * (3 * 30 + 2), 2 * (2 * 30 + 2))
    meta = json.loads(js.read_text())
    assert meta["seed"] == 0 and meta["steps"] == 2 and meta["class_label"] is None and meta["nfe_per_image"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "g.png"]  # no temporary files left
    with pytest.raises(ValueError, match=".png"):
        out.save(tmp_path / "g.jpg")
    (tmp_path / "h.json").mkdir()  # the settings' file cannot be written: neither is the grid
    with pytest.raises(ValueError, match="h.json: it is a folder"):
        out.save(tmp_path / "h.png")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        out.save(tmp_path / "file" / "g.png")
    assert not (tmp_path / "h.png").exists()
    with pytest.raises(ValueError, match="nrow"):
        out.grid(nrow=0)
    tiles = out.uint8()
    assert np.array_equal(np.array(make_grid(tiles[:1], padding=0)), tiles[0, 0].numpy())


def test_cli_writes_grid_and_settings(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from decoding.cli.main import main

    save_unet(tiny.model.net, tmp_path / "zoo" / "fashion-tiny", {"prediction": "v", "schedule": TRAIN_SCHEDULE})
    monkeypatch.setenv("DECODING_MODELS", str(tmp_path / "zoo"))
    out = tmp_path / "grid.png"
    argv = ["generate", "fashion-tiny", "--class", "7", "--n", "4", "--solver", "dpm_solver_pp", "--steps", "3",
            "--guidance", "cfg:2", "--out", str(out)]
    assert main(argv) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"] == "fashion-tiny" and meta["class_label"] == [7] * 4 and meta["solver"] == "dpmpp_2m"
    again = dc.generate("fashion-tiny", n=4, class_label=7, solver="dpmpp_2m", steps=3, guidance=["cfg:2"], seed=0)
    assert np.array_equal(np.array(Image.open(out)), np.array(again.grid(scale=2)))  # same seed, same images
    assert main(["image", "--model", "fashion-tiny", "--n", "1", "--steps", "2", "--out", str(tmp_path / "i.png")]) == 0
    (tmp_path / "d.png").mkdir()
    (tmp_path / "f").write_text("")
    calls: list = []
    monkeypatch.setattr(dc, "generate", lambda *a, **k: calls.append(a))  # each is refused before any sampling
    for bad in (["--out", str(tmp_path / "d.png")], ["--out", str(tmp_path / "f" / "g.png")], ["--out", str(tmp_path / "g.jpg")],
                ["--nrow", "-1", "--out", str(tmp_path / "g.png")]):
        assert main(["generate", "fashion-tiny", "--steps", "2", *bad]) == 2
    assert not calls
    assert not (tmp_path / "g.png").exists()
