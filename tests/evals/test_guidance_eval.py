"""The guidance evaluation at toy size on the CPU: every configuration writes its .npz and timings at the right NFE,
reruns skip finished rows, and the report joins FID lines into the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from decoding.cli.train import train_main
from decoding.evals.guidance import configs, main
from tests.distill.helpers import tiny_teacher

pytestmark = pytest.mark.one_thread


def test_guidance_eval_writes_samples_and_timings(tmp_path: Path) -> None:
    large, small = tiny_teacher(tmp_path / "large"), tiny_teacher(tmp_path / "small", seed=1)
    adapters = tmp_path / "large-agd"
    assert train_main("agd-fashion", ["--base", str(large), "--steps", "2", "--trajectories", "8", "--val-trajectories", "4",
                                      "--traj-steps", "3", "--batch-size", "8", "--device", "cpu", "--no-progress",
                                      "--no-channels-last", "--threads", "1", "--checkpoint", str(tmp_path / "ck"),
                                      "--out", str(adapters)]) == 0
    out = tmp_path / "eval"
    args = ["run", "--model", str(large), "--small", str(small), "--adapters", str(adapters), "--nfe", "6", "--n", "4",
            "--batch-size", "4", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    timings = json.loads((out / "timings.json").read_text())
    rows = {r["config"]: r for r in timings["rows"]}
    assert timings["command"] == "python -m decoding.evals.guidance " + " ".join(args)
    names = {c.name for c in configs([1.5, 2.0, 3.0], (3.0, 0.7), [0.6, 0.8, 1.0], [1.0, 2.0], (1.5, 1.0), [1.5, 2.0, 3.0],
                                     "x", [0.2, 0.4, 0.6], "y", 1.5)}
    assert set(rows) == names and len(names) == 17
    expect_nfe = {"none": 6, "cfg-2": 6, "cfgpp-0.8": 6, "pag-1": 6, "cfg-1.5-pag-1": 6, "agd-2": 6, "stitch-0.4": 6}
    for name, nfe in expect_nfe.items():
        assert rows[name]["nfe"] == nfe, (name, rows[name])
    assert rows["agd-2"]["steps"] == 6 and rows["cfg-2"]["steps"] == 3 and rows["cfg-1.5-pag-1"]["steps"] == 2
    data = np.load(rows["cfg-2"]["samples"])
    assert data["images"].dtype == np.uint8 and data["images"].shape == (4, 1, 28, 28)
    assert data["labels"].tolist() == [0, 1, 2, 3]
    before = (out / "timings.json").read_text()
    assert main(args) == 0 and (out / "timings.json").read_text().count('"row"') == before.count('"row"')  # all skipped
    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps({"samples": rows["cfg-2"]["samples"], "n": 4, "fid": 12.5, "class_accuracy": 0.75}) + "\n")
    assert main(["report", str(out), "--scores", str(scores)]) == 0
    table = (out / "table.md").read_text()
    assert "| 6 | CFG 2 | 3 | 6 | 12.50 | 0.750 |" in table and "| 6 | AGD 2 | 6 | 6 | - | - |" in table
    assert json.loads((out / "results.json").read_text())["results"][0]["nfe_budget"] == 6
    assert (out / "fid_vs_speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "fid_vs_accuracy.png").exists()
    assert "![fid vs speed](fid_vs_speed.png)" in table and "17 rows" in table
    assert sorted(p.name for p in (out / "grids").glob("*.png")) == sorted(f"{r['row']}.png" for r in timings["rows"])
    assert main(["run", "--model", str(large), "--out", str(out), "--only", "nope", "--device", "cpu"]) == 2
    speed = tmp_path / "speed"
    speed.mkdir()
    clean = json.loads((out / "timings.json").read_text()) | {"n": 2}
    for r in clean["rows"]:
        r["images_per_second"] = 777.5
    (speed / "timings.json").write_text(json.dumps(clean))
    assert main(["report", str(out), "--scores", str(scores), "--speed", str(speed)]) == 0
    table = (out / "table.md").read_text()
    assert "| 6 | CFG 2 | 3 | 6 | 12.50 | 0.750 | 777.5 |" in table and "separate run of 2 samples" in table
    shared = json.loads((out / "results.json").read_text())["results"][0]
    assert shared["images_per_second"] == 777.5 and shared["images_per_second_shared"] != 777.5
    clean["rows"] = clean["rows"][1:]
    (speed / "timings.json").write_text(json.dumps(clean))
    assert main(["report", str(out), "--speed", str(speed)]) == 2  # a row without a clean timing is an error
