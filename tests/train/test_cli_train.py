"""``decoding train``: clear errors (exit 2, one line) and the export of a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from decoding.cli.main import main
from decoding.data.weights import load_tensors
from tests.train.helpers import fashion_folder


def _err(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("decoding train: error:"), err
    return err[-1]


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fashion_folder(tmp_path_factory.mktemp("fashion"), n_train=32, n_test=16)


def _tiny(fashion: Path, ck: Path) -> list[str]:
    return ["train", "fashion-tiny", "--device", "cpu", "--no-progress", "--data", str(fashion), "--batch-size", "8",
            "--val-limit", "8", "--checkpoint", str(ck)]


def test_unknown_model_lists_the_known_ones(capsys: pytest.CaptureFixture) -> None:
    line = _err(capsys, ["train", "fashion-huge"])
    assert "unknown model 'fashion-huge'" in line and "fashion-large" in line and "radd-brown" in line
    assert "name a model" in _err(capsys, ["train"])
    assert main(["train", "--list"]) == 0 and "as-arm-brown" in capsys.readouterr().out
    assert main(["train", "--list", "radd-brown"]) == 0  # one model's line (the name was ignored)
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1 and listed[0].startswith("radd-brown ")
    assert "no trainable model 'fashion-huge'" in _err(capsys, ["train", "--list", "fashion-huge"])
    with pytest.raises(SystemExit) as e:
        main(["train", "radd-brown", "--help"])
    assert e.value.code == 0 and "--eval-repeats" in capsys.readouterr().out


def test_missing_data_says_how_to_pass_it(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    line = _err(capsys, ["train", "fashion-tiny", "--steps", "2", "--device", "cpu", "--data", str(tmp_path / "none"),
                         "--checkpoint", str(tmp_path / "ck")])
    assert "Fashion-MNIST folder" in line and "--data DIR" in line
    line = _err(capsys, ["train", "radd-brown", "--steps", "2", "--device", "cpu", "--data", str(tmp_path / "t.safetensors"),
                         "--checkpoint", str(tmp_path / "ck2")])
    assert "token file" in line and "--data FILE" in line
    assert not (tmp_path / "ck").exists()


def test_resume_needs_a_checkpoint_and_keeps_its_options(capsys: pytest.CaptureFixture, fashion: Path, tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    assert "no checkpoint" in _err(capsys, ["train", "fashion-tiny", "--resume", "--checkpoint", str(ck)])
    assert main([*_tiny(fashion, ck), "--steps", "4", "--stop-at", "2", "--no-export"]) == 0
    assert "--resume" in _err(capsys, [*_tiny(fashion, ck), "--steps", "4"])  # would overwrite the run
    line = _err(capsys, ["train", "fashion-tiny", "--resume", "--checkpoint", str(ck), "--lr", "0.1"])
    assert "--lr 0.1" in line and "keeps its options" in line
    line = _err(capsys, ["train", "fashion-small", "--resume", "--checkpoint", str(ck)])
    assert "checkpoint of 'fashion-tiny'" in line
    assert "--steps must be > 0" in _err(capsys, [*_tiny(fashion, tmp_path / "x"), "--steps", "0"])
    assert "--steps (the run's length) or --minutes" in _err(capsys, _tiny(fashion, tmp_path / "y"))


def test_export_only_rebuilds_the_shipped_model(fashion: Path, tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    assert main([*_tiny(fashion, ck), "--steps", "3", "--out", str(tmp_path / "a")]) == 0
    state = json.loads((ck / "state.json").read_text())  # as if written on a GPU machine
    state["options"]["device"], state["device_type"], state["sessions"][-1]["device"] = "cuda", "cuda", "NVIDIA H100"
    (ck / "state.json").write_text(json.dumps(state))
    assert main(["train", "fashion-tiny", "--export-only", "--checkpoint", str(ck), "--out", str(tmp_path / "b"),
                 "--data", str(tmp_path / "gone")]) == 0  # no data needed
    a, _ = load_tensors(tmp_path / "a" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a) and all(v.dtype == torch.bfloat16 for v in a.values())
    for name in ("config.json", "train_log.json", "loss.png"):
        assert (tmp_path / "b" / name).is_file()
    assert json.loads((tmp_path / "b" / "train_log.json").read_text())["device"] == "NVIDIA H100"


def test_benchmark_prints_steps_per_second(fashion: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    from decoding.train import speed

    full = speed.variants
    monkeypatch.setattr(speed, "variants", lambda task, opts: [v for v in full(task, opts) if not v[1]["compile"]])
    assert main(["train", "fashion-tiny", "--benchmark", "--benchmark-steps", "2", "--device", "cpu", "--data", str(fashion),
                 "--batch-size", "8", "--val-limit", "8", "--benchmark-profile"]) == 0
    out = capsys.readouterr().out
    assert "steps/s" in out and "eager, NCHW" in out and "1.00" in out and "profile of the reference (eager)" in out


def test_file_paths_and_lone_profile_are_refused_before_training(capsys: pytest.CaptureFixture, fashion: Path,
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from decoding.train import loop

    monkeypatch.setattr(loop.Trainer, "run", lambda self: pytest.fail("trained despite a bad option"))
    afile = tmp_path / "afile"
    afile.write_text("")
    assert "--checkpoint" in _err(capsys, [*_tiny(fashion, afile), "--steps", "2"]) and "is a file" in _err(
        capsys, [*_tiny(fashion, afile), "--steps", "2"])
    assert "--out" in _err(capsys, [*_tiny(fashion, tmp_path / "ck"), "--steps", "2", "--out", str(afile)])
    assert "--benchmark-profile applies with --benchmark" in _err(capsys, [*_tiny(fashion, tmp_path / "ck"),
                                                                          "--benchmark-profile"])
