"""DC-Solver: compensation, ratio search (recovers planted ratios exactly), cascade polynomial regression."""

from __future__ import annotations

import pytest
import torch

from decoding import decode
from decoding.denoisers import ClosedFormModel
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import (
    CascadePolynomialRegression,
    DCSolver,
    DiscreteVPSchedule,
    UniPC,
    make_timesteps,
    search_dc_ratios,
)
from decoding.solvers.dc_solver import lagrange_compensation
from decoding.solvers.registry import get_solver
from tests.solvers.problems import mixture, noise

SCHEDULE = DiscreteVPSchedule()


def test_unit_ratios_are_unipc():
    data = mixture()
    x = noise(16, 4)
    for order in (2, 3):
        ref = decode(ClosedFormModel(data), ContinuousProcess(SCHEDULE, UniPC(order)), x, steps=8).x
        dc = decode(ClosedFormModel(data), ContinuousProcess(SCHEDULE, DCSolver((1.0,) * 8, order=order)), x, steps=8).x
        assert torch.equal(ref, dc)


def test_lagrange_compensation_is_exact_on_quadratics():
    ts = [700.0, 500.0, 380.0]
    a, b, c = (torch.randn(3, 2, generator=torch.Generator().manual_seed(k), dtype=torch.float64) for k in range(3))
    x0s = [a + b * t + c * t * t for t in ts]
    for tau in (380.0, 420.5, 300.0):
        assert torch.allclose(lagrange_compensation(x0s, ts, tau), a + b * tau + c * tau * tau, rtol=1e-12)


def test_search_recovers_planted_ratios():
    """If the reference is a DC trajectory with known ratios, each step's search must find that ratio."""
    data = mixture()
    model = ClosedFormModel(data)
    steps = 6
    ts = make_timesteps(SCHEDULE, steps, "logsnr")
    planted = (1.0, 1.0, 0.8, 1.25, 0.9, 1.1)
    x = noise(10, 4, seed=8)
    states: list[torch.Tensor] = [x]

    def keep(i, state, pred):
        if i >= 1:  # the corrected sample of step i is in the history after step i + 1
            states[i] = state.memory["solver"].last_x
        states.append(state.x)

    decode(model, ContinuousProcess(SCHEDULE, DCSolver(planted), timesteps=ts), x, steps=steps, callback=keep)
    found = search_dc_ratios(model, SCHEDULE, DCSolver(), ts, x, states)
    assert found[:2] == (1.0, 1.0)
    assert max(abs(f - p) for f, p in zip(found, planted, strict=True)) < 1e-2, found


def _ratios(e: torch.Tensor, nfe: int, cfg: float) -> list[float]:
    x = torch.arange(1, nfe + 1, dtype=torch.float64) / nfe
    c, n = cfg / 12.0, nfe / 50.0
    out = sum(e[a, b, k] * x**a * c**b * n**k for a in range(3) for b in range(3) for k in range(3))
    return [1.0, 1.0, *out[2:].tolist()]


def test_cascade_polynomial_regression_recovers_a_cascade():
    e = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    records = [(nfe, cfg, _ratios(e, nfe, cfg)) for nfe in (5, 6, 8, 10, 12) for cfg in (1.0, 4.0, 7.5)]
    reg = CascadePolynomialRegression(bounds=(-1e9, 1e9)).fit(records)
    for nfe, cfg in ((7, 3.0), (9, 6.0), (20, 2.0)):
        assert torch.allclose(torch.tensor(reg.predict(nfe, cfg)), torch.tensor(_ratios(e, nfe, cfg)), atol=1e-8)


def test_cpr_save_load_and_registry(tmp_path):
    records = [(nfe, 0.0, [1.0, 1.0] + [0.9 + 0.01 * k for k in range(nfe - 2)]) for nfe in (5, 6, 8, 10)]
    reg = CascadePolynomialRegression((2, 0, 2)).fit(records)
    path = reg.save(tmp_path / "dc_cpr.safetensors")
    back = CascadePolynomialRegression.load(path)
    assert back.predict(7) == reg.predict(7) and len(back.predict(7)) == 7
    solver = get_solver("dc_solver", cpr=path, steps=9)
    assert isinstance(solver, DCSolver) and len(solver.ratios) == 9
    with pytest.raises(ValueError, match="not fitted"):
        CascadePolynomialRegression().predict(5)
    with pytest.raises(ValueError, match="needs steps"):
        get_solver("dc_solver", cpr=path)


def test_ratio_count_must_match_the_grid():
    with pytest.raises(ValueError, match="ratios but the grid has"):
        decode(ClosedFormModel(mixture()), ContinuousProcess(SCHEDULE, DCSolver((1.0, 0.9, 1.1))), (2, 4), steps=5, seed=0)
