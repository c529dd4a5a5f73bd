"""``decoding.generate`` and ``decoding generate`` with image AR teachers and DD students (tiny random models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import decoding as dc
from decoding.api.image_ar import tokenizer_folder
from decoding.api.options import OptionError
from decoding.cli.main import main as cli
from tests.dd.helpers import Zoo, tiny_zoo

pytestmark = pytest.mark.one_thread


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return tiny_zoo(tmp_path_factory.mktemp("ddzoo"))


def test_teacher_samplers(zoo: Zoo) -> None:
    h = dc.load(str(zoo.ar), device="cpu")
    assert h.kind == "image-ar" and h.classes[7] == "Sneaker"
    for sampler, nfe in (("ancestral", 98), ("flow", 98), ("one-pass", 2)):  # card default guidance cfg:1.5 -> 2 calls
        out = dc.generate(h, class_label=7, n=3, sampler=sampler, seed=0)
        assert out.images.shape == (3, 1, 28, 28) and out.images.dtype == torch.float32
        assert out.images.min() >= -1 and out.images.max() <= 1 and out.nfe == [nfe] * 3
        assert torch.equal(out.images, dc.generate(h, class_label=7, n=3, sampler=sampler, seed=0).images)
        assert out.settings["sampler"] == sampler and out.labels.tolist() == [7, 7, 7]
    plain = dc.generate(h, class_label=[1, 2], n=2, guidance=["cfg:1"], seed=1, batch_size=1)
    assert plain.nfe == [49, 49] and plain.settings["guidance"] == ["cfg:1"]
    hot = dc.generate(h, n=2, sampling={"temperature": 0.7, "top_k": 5}, seed=1)  # unconditional
    assert hot.labels.tolist() == [10, 10]
    assert hot.nfe == [49, 49] and hot.settings["guidance"] == ["cfg:1"]  # the card's CFG has nothing to guide towards


def test_student_steps_and_shared_noise(zoo: Zoo) -> None:
    s = dc.load(str(zoo.dd), device="cpu")
    assert s.kind == "image-ar-dd" and s.reenter == 24
    one = dc.generate(s, class_label=3, n=4, seed=0)
    two = dc.generate(s, class_label=3, n=4, steps=2, seed=0, batch_size=3)
    assert one.nfe == [1.0] * 4 and two.nfe == [2.0] * 4 and one.settings["steps"] == 1
    assert torch.equal(one.images, dc.generate(s, class_label=3, n=4, steps=1, seed=0).images)
    assert not torch.equal(one.images, dc.generate(s, class_label=3, n=4, seed=1).images)
    from decoding.api.image_ar import draw_noise

    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(draw_noise(g1, 2, 49, 4, torch.device("cpu")), draw_noise(g2, 2, 49, 4, torch.device("cpu")))


def test_bad_options_are_refused(zoo: Zoo) -> None:
    h, s = dc.load(str(zoo.ar), device="cpu"), dc.load(str(zoo.dd), device="cpu")
    cases = [
        (lambda: dc.generate(s, class_label=1, guidance=["cfg:2"]), "option 'guidance' does not apply to image-ar-dd"),
        (lambda: dc.generate(s, class_label=1, steps=3), "steps must be 1 or 2"),
        (lambda: dc.generate(h, class_label=1, sampler="euler"), "unknown sampler"),
        (lambda: dc.generate(h, class_label=1, sampler="flow", sampling={"temperature": 0.5}), "apply to sampler='ancestral'"),
        (lambda: dc.generate(h, class_label=1, guidance=["pag:2"]), "one plain CFG scale"),
        (lambda: dc.generate(h, class_label=11), "out of range"),
        (lambda: dc.generate(h, guidance=["cfg:2"]), "CFG needs class labels"),
        (lambda: dc.generate(h, class_label=1, steps=4), "option 'steps' does not apply to image-ar"),
        (lambda: dc.generate(h, class_label=1, sampling={"typical": 0.5}), "sampling.typical does not apply"),
    ]
    for call, message in cases:
        with pytest.raises(OptionError, match=message):
            call()
    s.card = {**s.card, "dd": {**s.card["dd"], "uncond_share": 0.0}}
    with pytest.raises(OptionError, match="class-conditional pairs only: give class_label"):
        dc.generate(s)


def test_tokenizer_is_found_beside_the_model_or_in_the_zoo(zoo: Zoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = json.loads((zoo.ar / "config.json").read_text())
    assert tokenizer_folder(card, zoo.ar) == zoo.vq
    moved = tmp_path / "elsewhere"
    shutil.copytree(zoo.ar, moved / "fashion-ar")
    card["tokenizer"]["path"] = str(tmp_path / "gone")
    monkeypatch.setenv("DECODING_MODELS", str(tmp_path / "empty-zoo"))
    with pytest.raises(FileNotFoundError, match="was not found"):
        tokenizer_folder(card, moved / "fashion-ar")
    monkeypatch.setenv("DECODING_MODELS", str(zoo.vq.parent))
    assert tokenizer_folder(card, moved / "fashion-ar") == zoo.vq
    with pytest.raises(ValueError, match="no 'tokenizer' entry"):
        tokenizer_folder({}, None)


def test_cli_generates_by_zoo_name(zoo: Zoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DECODING_MODELS", str(zoo.vq.parent))
    out = tmp_path / "t.png"
    assert cli(["generate", "fashion-ar", "--class", "7", "--n", "64", "--device", "cpu", "--out", str(out)]) == 0
    assert "64 images, 98 NFE each" in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["class_label"] == [7] * 64
    out2 = tmp_path / "s.png"
    assert cli(["generate", "fashion-ar-dd", "--steps", "1", "--class", "2", "--n", "8", "--device", "cpu", "--out", str(out2)]) == 0
    assert "8 images, 1 NFE each" in capsys.readouterr().out and out2.is_file()
    assert cli(["generate", "fashion-ar-dd", "--steps", "2", "--class", "2", "--device", "cpu", "--out", str(out2)]) == 0
    monkeypatch.chdir(tmp_path)  # the command: unconditional, one step, grid.png in the working folder
    assert cli(["generate", "fashion-ar-dd", "--steps", "1", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "grid.json").read_text())["class_label"] == [10]
    assert cli(["generate", "fashion-ar", "--sampler", "flow", "--class", "1", "--n", "2", "--device", "cpu", "--out", str(out2)]) == 0
    assert cli(["generate", "fashion-ar-dd", "--guidance", "cfg:2", "--class", "2", "--device", "cpu"]) == 2
    assert "does not apply to image-ar-dd" in capsys.readouterr().err
