"""``generate(guidance=[DTS(...)] / [Steer(...)] / ...)`` and ``decoding generate --inpaint`` on a tiny UNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import decoding as dc
from decoding.api.image import image_handle
from decoding.api.zoo import Handle
from decoding.control import DPS, DTS, Deblur, Inpaint, Replace, Steer, SuperResolution, box_mask
from decoding.control.images import read_image, read_mask, write_image
from tests.api.fixtures import tiny_unet_model
from tests.control.fixtures import tiny_model_folder


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-1, 1).flatten(1).mean(1).double()


@pytest.fixture(scope="module")
def tiny() -> Handle:
    model = tiny_unet_model()
    return image_handle(model, "tiny", {}, model.device)


def test_dts_through_generate_grows_one_persistent_tree_per_image(tiny, tmp_path: Path) -> None:
    dts = DTS(brightness, rollouts=3, max_children=2)
    out = dc.generate(tiny, n=2, steps=4, guidance=[dts], seed=0)
    assert out.images.shape == (2, 1, 28, 28) and out.settings["solver"] == "ddpm"  # DTS's default sampler
    assert out.settings["guidance"][0].startswith("dts:rollouts=3")
    assert out.nfe[0] <= 3 * 4 and torch.allclose(brightness(out.images), torch.tensor(out.info["reward"], dtype=torch.float64), atol=1e-6)
    nodes = len(dts.tree)
    again = dc.generate(tiny, n=2, steps=4, guidance=[dts], seed=1)  # the same trees keep growing
    assert len(dts.tree) > nodes and int(dts.tree.visits[dts.tree.roots].sum()) == 2 * 6
    assert again.settings["rollouts_total"] == 12
    path = dts.save(tmp_path / "trees.safetensors")
    more = DTS(brightness, rollouts=1, max_children=2).load(path)
    dc.generate(tiny, n=2, steps=4, guidance=[more], seed=2)
    assert int(more.tree.visits[more.tree.roots].sum()) == 14
    with pytest.raises(dc.OptionError, match="other settings"):
        dc.generate(tiny, n=2, steps=5, guidance=[dts], seed=0)
    with pytest.raises(dc.OptionError, match="deterministic"):
        dc.generate(tiny, n=1, steps=4, solver="ddim", guidance=[DTS(brightness, rollouts=1)])
    with pytest.raises(dc.OptionError, match="batch_size"):
        dc.generate(tiny, n=2, steps=4, batch_size=1, guidance=[DTS(brightness, rollouts=1)])
    with pytest.raises(dc.OptionError, match="lam"):
        dc.generate(tiny, n=1, guidance=["dts:2,class=7,lam=-1"])
    with pytest.raises(dc.OptionError, match="class="):
        dc.generate(tiny, n=1, guidance=["dts:2"])


def test_descending_existing_nodes_costs_no_model_call(tiny) -> None:
    """With one child per node the first rollout makes the only path; later rollouts walk it for free."""
    dts = DTS(brightness, rollouts=5, max_children=1)
    out = dc.generate(tiny, n=3, steps=4, guidance=[dts], seed=0)
    assert out.nfe == [4.0, 4.0, 4.0]
    assert int(dts.tree.visits[dts.tree.roots].sum()) == 15 and len(dts.tree) == 3 * (1 + 4 + 1)


def test_dts_text_form_builds_a_classifier_reward(tiny) -> None:
    out = dc.generate(tiny, n=1, steps=3, guidance=["dts*:2,class=7,children=2"], seed=0)
    assert out.settings["guidance"] == ["dts*:rollouts=2,lam=1,children=2,reward=classifier:7"]


def test_steering_wrappers_run_through_generate(tiny) -> None:
    truth = torch.rand(2, 1, 28, 28) * 2 - 1
    m = box_mask()
    plain = dc.generate(tiny, n=2, steps=5, solver="ddim", seed=0)
    nothing = dc.generate(tiny, n=2, steps=5, solver="ddim", seed=0,
                          guidance=[Steer(Inpaint(truth, torch.zeros_like(m)))])
    assert torch.equal(plain.images, nothing.images)  # zero loss: the plain sampler, bit for bit
    for g in (Steer(Inpaint(truth, m)), DPS(Inpaint(truth, m)), Replace(Inpaint(truth, m)),
              Steer(SuperResolution(torch.nn.functional.avg_pool2d(truth, 4))), Steer(Deblur(truth))):
        out = dc.generate(tiny, n=2, steps=5, solver="ddim", seed=0, guidance=[g])
        assert out.nfe == [5.0, 5.0] and not torch.equal(out.images, plain.images), g.spec()
    replaced = dc.generate(tiny, n=2, steps=5, solver="ddim", seed=0, guidance=[Replace(Inpaint(truth, m))])
    assert torch.allclose(replaced.images * m, (truth * m).clamp(-1, 1), atol=1e-4)
    with pytest.raises(dc.OptionError, match="observation has 2 images"):
        dc.generate(tiny, n=3, guidance=[Steer(Inpaint(truth, m))])
    with pytest.raises(dc.OptionError, match="one batch"):
        dc.generate(tiny, n=2, batch_size=1, guidance=[Steer(Inpaint(truth, m))])


def test_cli_inpaints_and_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    from decoding.cli.main import main

    tiny_model_folder(tmp_path / "zoo" / "fashion-tiny")
    monkeypatch.setenv("DECODING_MODELS", str(tmp_path / "zoo"))
    truth = torch.rand(1, 1, 28, 28) * 2 - 1
    m = box_mask()
    write_image(tmp_path / "obs.png", truth * m)
    write_image(tmp_path / "mask.png", m * 2 - 1)
    write_image(tmp_path / "truth.png", truth)
    assert torch.equal(read_mask(tmp_path / "mask.png"), m)
    assert torch.allclose(read_image(tmp_path / "truth.png"), truth, atol=1 / 127.5)
    out = tmp_path / "filled.png"
    argv = ["generate", "fashion-tiny", "--inpaint", str(tmp_path / "obs.png"), "--mask", str(tmp_path / "mask.png"),
            "--truth", str(tmp_path / "truth.png"), "--n", "2", "--steps", "3", "--solver", "ddim", "--out", str(out)]
    assert main(argv) == 0
    report = tmp_path / "filled_report.png"
    assert out.is_file() and report.is_file() and "observation | result | truth" in capsys.readouterr().out
    with Image.open(report) as im:
        assert im.size == (4 * (3 * 30 + 2), 4 * (2 * 30 + 2))  # 3 columns, 2 rows of 28 px tiles (padding 2), x4
    assert main(["generate", "fashion-tiny", "--mask", str(tmp_path / "mask.png")]) == 2
    assert main(["generate", "fashion-tiny", "--inpaint", str(tmp_path / "obs.png")]) == 2
    assert main(["generate", "fashion-tiny", "--super-resolution", str(tmp_path / "obs.png"), "--steps", "2"]) == 2  # 28 != 7
    assert main(["generate", "fashion-tiny", "--deblur", str(tmp_path / "obs.png"), "--restore", "replace"]) == 2
