"""The solver examples run (small settings)."""

from __future__ import annotations

import pytest

from tests.examples.runner import run_example as _run

pytestmark = pytest.mark.one_thread  # tiny tensors: thread hand-offs would dominate


def _fashion_mnist() -> None:
    from decoding.data.fashion_mnist import DatasetNotFoundError, resolve_root

    try:
        resolve_root()
    except DatasetNotFoundError as err:
        pytest.skip(str(err))


def test_solvers_sample(tmp_path, capsys):
    _fashion_mnist()
    out = tmp_path / "grid.png"
    text = _run("examples/solvers_sample.py", ["--solver", "unipc_bh2", "--steps", "4", "--n-data", "100",
                                               "--samples", "4", "--out", str(out)], capsys)
    assert "unipc_bh2: 4 images in 4 NFE" in text and out.stat().st_size > 100


def test_solvers_convergence(capsys):
    text = _run("examples/solvers_convergence.py", ["--steps", "12", "24", "--samples", "32"], capsys)
    assert "DPM-Solver++(3M)" in text and "slope" in text


def test_solvers_dpm_solver_v3(tmp_path, capsys):
    _fashion_mnist()
    text = _run("examples/solvers_dpm_solver_v3.py", ["--model-dir", str(tmp_path / "m"), "--n-data", "50",
                                                      "--ems-samples", "8", "--knots", "10", "--samples", "4",
                                                      "--ref-steps", "40", "--steps", "4"], capsys)
    assert (tmp_path / "m" / "dpm_solver_v3_ems.safetensors").is_file() and "DPM-Solver-v3" in text


def test_solvers_dc_solver(capsys):
    text = _run("examples/solvers_dc_solver.py", ["--fit-nfe", "4", "5", "6", "--new-nfe", "5", "--ref-steps", "40",
                                                  "--samples", "16"], capsys)
    assert "predicted ratios" in text and "DC-Solver (CPR)" in text
