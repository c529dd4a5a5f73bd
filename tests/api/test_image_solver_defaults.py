"""Image diffusion through the public API: each solver's measured grid and the statistics its folder ships."""

from __future__ import annotations

import shutil

import pytest
import torch

import decoding as dc
from decoding.api.options import OptionError
from decoding.api.zoo import resolve
from decoding.solvers.registry import get_solver
from decoding.solvers.timesteps import default_spacing


@pytest.fixture(scope="module")
def small():
    return dc.load("fashion-small")


@pytest.mark.parametrize("solver", ["dpmpp_2m", "unipc_bh2", "ddim"])
def test_the_default_grid_is_the_solvers_measured_one(small, solver):
    out = dc.generate(small, n=2, class_label=3, solver=solver, steps=5, seed=0)
    want = default_spacing(get_solver(solver))
    assert out.settings["spacing"] == want
    same = dc.generate(small, n=2, class_label=3, solver=solver, steps=5, seed=0, spacing=want)
    other = dc.generate(small, n=2, class_label=3, solver=solver, steps=5, seed=0,
                        spacing="karras" if want != "karras" else "time")
    assert torch.equal(out.images, same.images) and not torch.equal(out.images, other.images)


def test_dpm_solver_v3_reads_the_statistics_of_the_loaded_model(small):
    folder = resolve("fashion-small").path
    auto = dc.generate(small, n=2, class_label=1, solver="dpm_solver_v3", steps=5, seed=0)
    given = dc.generate(small, n=2, class_label=1, solver="dpm_solver_v3", steps=5, seed=0,
                        solver_options={"ems": folder / "dpm_solver_v3_ems.safetensors"})
    assert torch.equal(auto.images, given.images)


def test_a_solver_without_its_statistics_is_refused_with_the_command_that_makes_them(tmp_path):
    bare = tmp_path / "fashion-small"
    shutil.copytree(resolve("fashion-small").path, bare, ignore=shutil.ignore_patterns("dc_solver_ratios.safetensors"))
    model = dc.load(str(bare))
    with pytest.raises(OptionError, match=r"dc_solver needs .*searched ratios.*solver_dc.py --model .* --save"):
        dc.generate(model, n=1, class_label=0, solver="dc_solver", steps=5)


def test_dc_solver_uses_the_shipped_ratios_only_where_fid_confirmed_them(small):
    """fashion-small's table keeps its searched ratios at NFE 8 only (FID-10k, docs/perf/solvers_fid.md):
    elsewhere DC-Solver is UniPC-2 exactly."""
    for steps, same in ((5, True), (10, True), (8, False)):
        dcs = dc.generate(small, n=2, class_label=4, solver="dc_solver", steps=steps, seed=0)
        base = dc.generate(small, n=2, class_label=4, solver="unipc_bh2", steps=steps, seed=0)
        assert torch.equal(dcs.images, base.images) == same, steps


def test_unknown_spacing_is_refused(small):
    with pytest.raises(OptionError, match="unknown spacing 'linear'"):
        dc.generate(small, n=1, class_label=0, steps=5, spacing="linear")
