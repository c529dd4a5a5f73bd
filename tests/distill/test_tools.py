"""The GPU-plan helpers at toy size: chained rounds (skip, stop, resume), teacher samples as data, cards with results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import decoding as dc
from decoding.data.fashion_mnist import fashion_splits
from decoding.distill.card import main as card_main
from decoding.distill.samples import main as samples_main
from decoding.train.distill_rounds import finished, rounds
from decoding.train.distill_rounds import main as rounds_main
from tests.distill.conftest import RUN, Students

pytestmark = pytest.mark.one_thread


def test_rounds_halve_down_to_until() -> None:
    assert rounds(64, 1) == [32, 16, 8, 4, 2, 1] and rounds(8, 4) == [4]
    with pytest.raises(ValueError, match="cannot be halved"):
        rounds(12, 1)
    with pytest.raises(ValueError, match="does not reach"):
        rounds(4, 4)


def test_rounds_chain_stop_and_resume(students: Students, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    root = tmp_path / "runs"
    cmd = ["--teacher", str(students.stage1), "--teacher-steps", "4", "--until", "1", "--root", str(root), "--",
           "--data", str(students.data), *RUN, "--steps", "2"]
    assert rounds_main([*cmd, "--stop-at", "1"]) == 1  # the first round stops after one of its two steps
    assert not finished(root / "steps-2") and "rerun this command to resume" in capsys.readouterr().out
    assert rounds_main(cmd) == 0  # resumes round 4 -> 2, then runs 2 -> 1
    for n, teacher in ((2, students.stage1), (1, root / "steps-2")):
        card = json.loads((root / f"steps-{n}" / "config.json").read_text())
        assert finished(root / f"steps-{n}") and card["distill"]["steps"] == n and card["distill"]["teacher"] == str(teacher)
    log = json.loads((root / "steps-2" / "train_log.json").read_text())
    assert len(log["sessions"]) == 2 and log["steps"] == 2
    capsys.readouterr()
    assert rounds_main(cmd) == 0 and capsys.readouterr().out.count("done earlier") == 2
    assert dc.generate(dc.load(root / "steps-1"), class_label=3, steps=1).nfe == [1.0]


def test_rounds_go_on_from_the_last_finished_round(students: Students, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A new machine gets only the last finished student (steps-2 of 8 -> 4 -> 2 -> 1): round 8 -> 4 is not
    trained again, and the next round learns from that student."""
    root = tmp_path / "runs"
    shutil.copytree(students.steps2, root / "steps-2")
    assert finished(root / "steps-2")
    cmd = ["--teacher", str(students.stage1), "--teacher-steps", "8", "--until", "1", "--root", str(root), "--",
           "--data", str(students.data), *RUN, "--steps", "1"]
    assert rounds_main(cmd) == 0
    out = capsys.readouterr().out
    assert "round 8 -> 4: skipped" in out and "round 4 -> 2: done earlier" in out and not (root / "steps-4").exists()
    card = json.loads((root / "steps-1" / "config.json").read_text())
    assert finished(root / "steps-1") and card["distill"]["teacher"] == str(root / "steps-2")


def test_deadline_starts_no_round_that_cannot_finish(students: Students, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    cmd = ["--teacher", str(students.steps2), "--root", str(tmp_path), "--minutes", "2", "--deadline-minutes", "2.2", "--",
           "--data", str(students.data), *RUN]
    assert rounds_main(cmd) == 0 and "not started" in capsys.readouterr().out
    assert not (tmp_path / "steps-1").exists()


def test_teacher_samples_make_a_training_set(students: Students, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    assert samples_main(["--teacher", str(students.teacher), "--n", "12", "--n-test", "4", "--steps", "2", "--device", "cpu",
                         "--batch-size", "5", "--out", str(out)]) == 0
    (x, y), (vx, vy), info = fashion_splits(out)
    assert x.shape == (12, 1, 28, 28) and vx.shape == (4, 1, 28, 28) and info["train_images"] == 12
    assert y.tolist() == [i % 10 for i in range(12)] and vy.tolist() == [0, 1, 2, 3]
    want = dc.generate(dc.load(students.teacher), n=12, class_label=torch.arange(12) % 10, steps=2, solver="dpmpp_2m", seed=0)
    assert torch.equal(((x + 1) * 127.5).round().to(torch.uint8), want.uint8())
    assert json.loads((out / "samples.json").read_text())["steps"] == 2
    assert samples_main(["--teacher", str(students.stage1), "--n", "2", "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2


def test_card_shows_the_rows_of_its_folder(students: Students, tmp_path: Path) -> None:
    folder = tmp_path / "steps-1"
    shutil.copytree(students.steps1, folder)
    results = {"command": "python -m decoding.evals.distill ...", "device_name": "cpu", "date": "2026-12-06", "results": [
        {"label": "steps-1 (1 step)", "model": str(folder), "sampler": "deterministic", "nfe": 1.0, "scale": 1.5,
         "w": 0.5, "n": 10, "fid": 42.123, "class_accuracy": 0.5, "images_per_second": 99.0},
        {"label": "teacher", "model": str(students.teacher), "sampler": "dpmpp_2m 20 steps", "nfe": 40.0, "scale": 1.5,
         "w": 0.5, "n": 10, "fid": 12.0, "images_per_second": 9.0}]}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(results))
    assert card_main([str(folder), "--eval", str(path)]) == 0
    text = (folder / "README.md").read_text()
    assert "| steps-1 (1 step) | deterministic | 1.0 | 1.5 (0.5) | 10 | 42.12 | 0.500 | 99.0 |" in text
    assert "| teacher | dpmpp_2m" not in text and "--steps 1 --guidance cfg:1.5 --out grid.png" in text
    assert "train_log" not in text and "reproduce: `decoding train distill-progressive" in text


def test_card_finds_its_rows_after_the_folder_moved(students: Students, tmp_path: Path) -> None:
    """The GPU plan evaluates out/distill/steps-N, then moves the students to models/...-distill-N: rows follow the weights."""
    from decoding.evals.distill import main as eval_main

    path = tmp_path / "eval.json"
    assert eval_main(["--teacher", str(students.teacher), "--students", str(students.steps1), "--n", "2", "--batch-size", "2",
                      "--teacher-steps", "2", "--baseline-steps", "--device", "cpu", "--no-fid", "--no-classifier",
                      "--out", str(path)]) == 0
    moved = tmp_path / "models" / "fashion-tiny-distill-1"
    shutil.copytree(students.steps1, moved)
    assert card_main([str(moved), "--eval", str(path)]) == 0
    text = (moved / "README.md").read_text()
    assert "| steps-1 (1 step) | deterministic | 1.0 | 1.5 (0.5) | 2 |" in text and "Not measured yet" not in text
    assert "| teacher CFG" not in text
