"""benchmarks/dd_eval.py runs at toy size on the CPU (tiny random models, no FID)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dd.helpers import tiny_zoo
from tests.examples.runner import load_script

pytestmark = pytest.mark.one_thread


def test_dd_eval_toy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    zoo = tiny_zoo(tmp_path / "zoo")
    bench = load_script("benchmarks/dd_eval.py", "dd_eval")
    out = tmp_path / "r.json"
    assert bench.main(["--teacher", str(zoo.ar), "--student", str(zoo.dd), "--n", "12", "--batch-size", "6",
                       "--timed-batches", "1", "--timed-reps", "2", "--min-seconds", "0", "--device", "cpu", "--no-fid",
                       "--out-dir", str(tmp_path / "grids"), "--json", str(out), "--npz-dir", str(tmp_path / "npz"),
                       "--classifier", "fashion-classifier"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"teacher", "teacher-cfg", "teacher-flow", "dd-1", "dd-2", "one-pass"}
    assert [rows[k]["nfe"] for k in ("teacher", "teacher-cfg", "dd-1", "dd-2", "one-pass")] == [49, 98, 1, 2, 2]
    assert all(0.0 <= r["class_accuracy"] <= 1.0 for r in rows.values())
    assert rows["teacher-cfg"]["speedup_vs_teacher_cfg"] == 1.0 and rows["dd-1"]["images_per_s"] > 0
    reps = rows["dd-1"]["images_per_s_reps"]  # two timed repetitions; the figure is their median
    assert len(reps) == 2 and rows["dd-1"]["images_per_s"] == pytest.approx(sum(reps) / 2)
    assert all(0.0 <= rows[k]["same_as_map"] <= 1.0 for k in ("dd-1", "dd-2")) and "same_as_map" not in rows["teacher"]
    import numpy as np

    saved = np.load(tmp_path / "npz" / "dd-2.npz")
    assert saved["images"].shape == (12, 1, 28, 28) and saved["images"].dtype == np.uint8 and saved["labels"][11] == 1
    assert (tmp_path / "grids" / "dd-1.png").is_file() and "| dd-1 | 1 |" in capsys.readouterr().out


def test_dd_vq_check_toy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.train.helpers import fashion_folder

    zoo = tiny_zoo(tmp_path / "zoo")
    data = fashion_folder(tmp_path / "data", 8, 24)
    check = load_script("benchmarks/dd_vq_check.py", "dd_vq_check")
    assert check.main(["--vq", str(zoo.vq), "--data", str(data), "--grid", str(tmp_path / "g.png")]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["images"] == 24 and row["mse"] > 0 and 1 <= row["perplexity"] <= 16 and (tmp_path / "g.png").is_file()


def test_dd_eval_teacher_rows_without_a_student(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The teacher's rows alone (its card's default CFG scale); dd rows without --student are refused."""
    zoo = tiny_zoo(tmp_path / "zoo")
    bench = load_script("benchmarks/dd_eval.py", "dd_eval")
    out = tmp_path / "r.json"
    assert bench.main(["--teacher", str(zoo.ar), "--rows", "teacher-cfg", "one-pass", "--n", "6", "--batch-size", "6",
                       "--timed-batches", "1", "--timed-reps", "1", "--min-seconds", "0", "--device", "cpu", "--no-fid", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert set(got["rows"]) == {"teacher-cfg", "one-pass"} and got["meta"]["cfg_scale"] == 1.5
    assert got["rows"]["teacher-cfg"]["nfe"] == 98
    with pytest.raises(SystemExit):
        bench.main(["--teacher", str(zoo.ar), "--rows", "dd-1", "--device", "cpu", "--no-fid"])
    assert "need --student" in capsys.readouterr().err


def test_same_as_map_counts_whole_images() -> None:
    """``same_as_map``: an image counts only when every pixel equals the map's; shapes must agree."""
    import torch

    bench = load_script("benchmarks/dd_eval.py", "dd_eval")
    ref = torch.rand(4, 1, 28, 28)
    other = ref.clone()
    other[1, 0, 27, 27] += 1e-3
    assert bench.same_share(ref, ref) == 1.0 and bench.same_share(other, ref) == 0.75
    with pytest.raises(ValueError, match="cannot compare"):
        bench.same_share(ref[:3], ref)
