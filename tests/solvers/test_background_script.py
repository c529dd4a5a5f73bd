"""benchmarks/solver_background.py: its measures on hand-made images, and a toy run on the CPU."""

from __future__ import annotations

import torch

from benchmarks.solver_background import main, measures


def test_measures_on_known_images():
    ref = -torch.ones(4, 1, 8, 8)
    ref[:, :, 2:6, 2:6] = torch.linspace(-0.5, 0.9, 16).view(4, 4)  # object on a black background
    same = measures(ref.clone(), ref)
    assert same == {"rmse": 0.0, "black_bg": 1.0, "bg_dev": 0.0, "laplacian": 1.0}
    hazy = ref.clone()
    bg = ref <= -0.99
    hazy[bg] = -1.0 + torch.where(torch.arange(int(bg.sum())) % 4 == 0, 0.02, 0.0)  # a quarter of the background grey
    m = measures(hazy, ref)
    assert m["black_bg"] == 0.75 and abs(m["bg_dev"] - 0.005) < 1e-6 and 0 < m["rmse"] < 0.02
    blurred = ref.clone()
    blurred[:, :, 2:6, 2:6] = ref[:, :, 2:6, 2:6].mean()
    assert measures(blurred, ref)["laplacian"] < 1.0


def test_toy_run(tmp_path):
    out = tmp_path / "bg.json"
    res = main(["--model", "fashion-small", "--n", "2", "--nfe", "2", "--ref-steps", "3",
                "--solvers", "ddim", "dpmpp_2m", "--out", str(out)])
    assert [(r["solver"], r["nfe"]) for r in res["rows"]] == [("ddim", 2), ("dpmpp_2m", 2)]
    assert out.is_file() and all(0 <= r["black_bg"] <= 1 and r["rmse"] > 0 for r in res["rows"])
