"""CPU smoke runs of both stages as ``decoding train`` tasks: the folders they write, resume, and bad set-ups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from decoding.cli.train import train_main
from decoding.train.progressive import nested_grids
from tests.distill.conftest import RUN, Students

pytestmark = pytest.mark.one_thread


def card(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_every_round_is_saved_with_its_card(students: Students) -> None:
    expect = {students.stage1: (1, None), students.steps2: (2, 2), students.steps1: (2, 1)}
    for folder, (stage, steps) in expect.items():
        c = card(folder)
        assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md", "train_log.json", "loss.png"}
        assert c["kind"] == "distilled-diffusion" and c["unet"]["guidance_embedding"] is True
        assert c["distill"]["stage"] == stage and c["distill"]["steps"] == steps
        assert c["distill"]["origin"] == str(students.teacher) and c["distill"]["w_range"] == [0.0, 3.0]
        assert c["defaults"]["guidance"] == "cfg:1.5" and c["weights_dtype"] == "bfloat16"
        log = json.loads((folder / "train_log.json").read_text())
        assert log["steps"] == 3 and log["finished"] and [r["step"] for r in log["history"]["valid"]] == [0, 2, 3]
        assert "decoding train distill-" in (folder / "README.md").read_text()
    assert card(students.steps2)["distill"]["teacher_steps"] == 4 and card(students.steps1)["distill"]["teacher_steps"] == 2


def test_stage1_loss_falls(students: Students, tmp_path: Path) -> None:
    """From the teacher's conditional output (the loss is then |w (c - u)|^2 of a random teacher) towards the guided
    one: 0.494 -> 0.444 in 10 steps (measured); a student fed other inputs than the target's would not move."""
    out = tmp_path / "s1"
    assert train_main("distill-guided", ["--teacher", str(students.teacher), "--steps", "10", "--lr", "3e-4",
                                         "--checkpoint", str(tmp_path / "ck"), "--out", str(out), "--data", str(students.data),
                                         *RUN, "--val-every", "10", "--ema-std", "0.05"]) == 0
    valid = [r["loss_raw"] for r in json.loads((out / "train_log.json").read_text())["history"]["valid"]]
    assert valid[-1] < 0.95 * valid[0], valid


def test_resumed_round_equals_the_uninterrupted_one(students: Students, tmp_path: Path) -> None:
    args = ["--teacher", str(students.steps2), "--steps", "4", "--data", str(students.data), *RUN, "--no-export"]
    assert train_main("distill-progressive", [*args, "--checkpoint", str(tmp_path / "a")]) == 0
    assert train_main("distill-progressive", [*args, "--checkpoint", str(tmp_path / "b"), "--stop-at", "2"]) == 0
    assert train_main("distill-progressive", [*args, "--checkpoint", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (load_file(str(next((tmp_path / k).glob("*.safetensors")))) for k in ("a", "b"))
    weights = [k for k in a if k.startswith(("model/", "ema/"))]
    assert weights and all(torch.equal(a[k], b[k]) for k in weights)


def test_bad_set_ups_are_refused(students: Students, tmp_path: Path) -> None:
    def run(name: str, *extra: str) -> None:
        train_main(name, [*extra, "--steps", "1", "--data", str(students.data), *RUN, "--checkpoint", str(tmp_path / "x"),
                          "--out", str(tmp_path / "y")])

    with pytest.raises(ValueError, match="is not one"):
        run("distill-progressive", "--teacher", str(students.teacher), "--teacher-steps", "4")
    with pytest.raises(ValueError, match="already a distilled student"):
        run("distill-guided", "--teacher", str(students.stage1))
    with pytest.raises(ValueError, match="give --teacher-steps"):
        run("distill-progressive", "--teacher", str(students.stage1))
    with pytest.raises(ValueError, match="is a 2-step student"):
        run("distill-progressive", "--teacher", str(students.steps2), "--teacher-steps", "8")
    with pytest.raises(ValueError, match="even number"):
        run("distill-progressive", "--teacher", str(students.steps1))
    with pytest.raises(ValueError, match="inside"):
        run("distill-progressive", "--teacher", str(students.steps2), "--w-max", "5")
    with pytest.raises(ValueError, match="--default-w"):
        run("distill-guided", "--teacher", str(students.teacher), "--w-max", "0.2")
    with pytest.raises(ValueError, match="--teacher is required"):
        run("distill-progressive")


def test_grids_nest() -> None:
    from decoding.models.image import TRAIN_SCHEDULE, schedule_from_config
    from decoding.solvers.timesteps import make_timesteps

    schedule = schedule_from_config(TRAIN_SCHEDULE)
    for n in (1, 2, 3, 32):
        teacher = nested_grids(schedule, n)
        assert teacher.numel() == 2 * n + 1 and torch.equal(teacher[::2], make_timesteps(schedule, n, "time"))
