"""DC-Solver: compensation, the step onto data, ratio searches, the ratio table, cascade polynomial regression."""

from __future__ import annotations

import json

import pytest
import torch

from decoding import decode
from decoding.core.types import State
from decoding.denoisers import ClosedFormModel
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import (
    CascadePolynomialRegression,
    DCRatios,
    DCSolver,
    DiscreteVPSchedule,
    UniPC,
    make_timesteps,
    search_dc_ratios,
)
from decoding.solvers.dc_search import descend
from decoding.solvers.dc_solver import lagrange_compensation, ratios_path
from decoding.solvers.reference import reference_solve
from decoding.solvers.registry import get_solver
from tests.solvers.problems import mixture, noise, rmse

SCHEDULE = DiscreteVPSchedule()


def _run(solver, x, steps=8, model=None, callback=None, spacing="logsnr"):
    model = model or ClosedFormModel(mixture())
    return decode(model, ContinuousProcess(SCHEDULE, solver, spacing=spacing), x, steps=steps, callback=callback).x


def test_unit_ratios_are_unipc():
    x = noise(16, 4)
    for order in (2, 3):
        ref = _run(UniPC(order), x)
        for final in (False, True):
            assert torch.equal(ref, _run(DCSolver((1.0,) * 8, order=order, compensate_final=final), x))


def test_lagrange_compensation_is_exact_on_quadratics():
    ts = [700.0, 500.0, 380.0]
    a, b, c = (torch.randn(3, 2, generator=torch.Generator().manual_seed(k), dtype=torch.float64) for k in range(3))
    x0s = [a + b * t + c * t * t for t in ts]
    for tau in (380.0, 420.5, 300.0):
        assert torch.allclose(lagrange_compensation(x0s, ts, tau), a + b * tau + c * tau * tau, rtol=1e-12)


def test_the_step_onto_data_returns_a_data_prediction():
    """Without ``compensate_final`` the output is the model's x0 at the last state, whatever the last ratio."""
    model = ClosedFormModel(mixture())
    x = noise(12, 4)
    last: dict[str, torch.Tensor] = {}

    def keep(i, state, pred):
        if i == 6:  # state after step 6 sits at ts[7] = t_min, where the last prediction is made
            last["x"] = state.x

    plain = _run(DCSolver((1.0, 1.0, 0.9, 1.1, 0.95, 1.05, 1.0, 1.0)), x, model=model, callback=keep)
    odd_last = _run(DCSolver((1.0, 1.0, 0.9, 1.1, 0.95, 1.05, 1.0, 0.3)), x, model=model)
    assert torch.equal(plain, odd_last)
    state = State(x=last["x"], t=torch.zeros(12, dtype=torch.float64), done=torch.zeros(12, dtype=torch.bool),
                  memory={"schedule": SCHEDULE})
    assert torch.allclose(plain, model(state).x0, atol=1e-14)
    blended = _run(DCSolver((1.0, 1.0, 0.9, 1.1, 0.95, 1.05, 1.0, 0.3), compensate_final=True), x, model=model)
    assert float((blended - plain).abs().max()) > 1e-3


@pytest.mark.parametrize("compensate_final", [False, True])
def test_greedy_search_recovers_planted_ratios(compensate_final):
    """If the reference is a DC trajectory with known ratios, the paper's step-by-step search finds each ratio."""
    model = ClosedFormModel(mixture())
    steps = 6
    ts = make_timesteps(SCHEDULE, steps, "logsnr")
    planted = (1.0, 1.0, 0.8, 1.25, 0.9, 1.1 if compensate_final else 1.0)
    x = noise(10, 4, seed=8)
    states: list[torch.Tensor] = [x]
    preds: list[torch.Tensor] = []

    def keep(i, state, pred):
        if i >= 1:  # the corrected sample of step i is in the history after step i + 1
            states[i] = state.memory["solver"].last_x
        states.append(state.x)
        preds.append(pred.x0)

    solver = DCSolver(planted, compensate_final=compensate_final)
    decode(model, ContinuousProcess(SCHEDULE, solver, timesteps=ts), x, steps=steps, callback=keep)
    found = search_dc_ratios(model, SCHEDULE, solver, ts, x, states, objective="greedy")
    assert found[:2] == (1.0, 1.0)
    assert max(abs(f - p) for f, p in zip(found, planted, strict=True)) < 1e-2, found


def test_final_objective_reaches_a_planted_run():
    """Coordinate descent on the final error nearly reaches the final samples of a planted DC run.

    (The final samples depend on the two ratios through a narrow valley, so the ratios themselves
    are not identified; the error is.)
    """
    model = ClosedFormModel(mixture())
    ts = make_timesteps(SCHEDULE, 5, "time")
    x = noise(32, 4, seed=8)

    def final(ratios):
        return decode(model, ContinuousProcess(SCHEDULE, DCSolver(ratios), timesteps=ts), x, steps=5).x

    target = final((1.0, 1.0, 0.8, 1.3, 1.0))
    found = search_dc_ratios(model, SCHEDULE, DCSolver(), ts, x, [target], sweeps=4)
    assert found[:2] == (1.0, 1.0) and found[-1] == 1.0
    assert rmse(final(found), target) < 0.1 * rmse(final((1.0,) * 5), target), found


def test_descend_stays_in_the_basin_of_its_start():
    """A loss with its global minimum on the bound 0 and a local one at 1.2: the local search keeps 1.2."""

    def f(r):
        return min((r - 1.2) ** 2 + 0.1, 0.05 + 4 * r * r)

    assert descend(f, 1.0, 0.1, 0.0, 2.0, 30) == pytest.approx(1.2, abs=1e-4)
    assert descend(f, None, 0.1, 0.0, 2.0, 30) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="lo <= start <= hi"):
        descend(f, 3.0, 0.1, 0.0, 2.0, 5)


@pytest.mark.parametrize("spacing", ["logsnr", "time"])
def test_searched_ratios_beat_unipc_on_held_out_noise(spacing):
    """Ratios searched on 10 datapoints lower the error of UniPC on 512 other noises at NFE 5-10."""
    model = ClosedFormModel(mixture(), SCHEDULE)
    x_search, x_test = noise(10, 4, seed=11), noise(512, 4, seed=12)
    ref = reference_solve(model, SCHEDULE, x_test, [SCHEDULE.t_max, SCHEDULE.t_end], steps=300)[-1]
    ref_search = reference_solve(model, SCHEDULE, x_search, [SCHEDULE.t_max, SCHEDULE.t_end], steps=300)
    for steps in (5, 6, 8, 10):
        ts = make_timesteps(SCHEDULE, steps, spacing)
        ratios = search_dc_ratios(model, SCHEDULE, DCSolver(), ts, x_search, ref_search)
        dc = rmse(_run(DCSolver(ratios), x_test, steps, model, spacing=spacing), ref)
        base = rmse(_run(UniPC(2), x_test, steps, model, spacing=spacing), ref)
        assert dc < 0.97 * base, (spacing, steps, dc, base, ratios)


def _table(nfes=(5, 6), spacing="logsnr", **kw) -> DCRatios:
    ratios = {n: tuple([1.0, 1.0] + [0.9 + 0.02 * k for k in range(n - 3)] + [1.0]) for n in nfes}
    grids = {n: tuple(make_timesteps(SCHEDULE, n, spacing).tolist()) for n in nfes}
    return DCRatios(ratios, grids, schedule_key=SCHEDULE.key, spacing=spacing, model="toy", **kw)


def test_ratio_table_round_trip_and_lookup(tmp_path):
    table = _table()
    path = table.save(ratios_path(tmp_path / "toy"))
    back = DCRatios.load(tmp_path / "toy")
    assert back == table and DCSolver(back).default_spacing == "logsnr"
    x = noise(6, 4)
    assert torch.equal(_run(DCSolver(back), x, 6), _run(DCSolver(table.ratios[6]), x, 6))
    assert isinstance(get_solver("dc_solver", ratios=path), DCSolver)
    with pytest.raises(ValueError, match="searched ratios for NFE \\[5, 6\\], not 8"):
        _run(DCSolver(back), x, 8)
    with pytest.raises(ValueError, match="use the same spacing or search again"):
        _run(DCSolver(back), x, 6, spacing="time")
    with pytest.raises(ValueError, match="searched for \\(order, variant, dc_order, compensate_final\\)"):
        DCSolver(back, order=3)
    with pytest.raises(ValueError, match="no DC-Solver ratios"):
        DCRatios.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="needs 5 ratios"):
        DCRatios({5: (1.0,) * 4}, {5: (0.0,) * 6})


def test_reset_ratios_give_the_base_solver_and_keep_the_reason(tmp_path):
    table = _table()
    reset = table.reset([5], "FID worse than UniPC")
    assert reset.ratios[5] == (1.0,) * 5 and reset.ratios[6] == table.ratios[6]
    assert json.loads(reset.info)["reset"] == {"5": "FID worse than UniPC"}
    back = DCRatios.load(reset.save(tmp_path / "r.safetensors"))
    assert back == reset
    x = noise(6, 4)
    assert torch.equal(_run(DCSolver(back), x, 5), _run(UniPC(2), x, 5))
    assert not torch.equal(_run(DCSolver(table), x, 5), _run(UniPC(2), x, 5))
    assert torch.equal(_run(DCSolver(back), x, 6), _run(DCSolver(table), x, 6))
    with pytest.raises(ValueError, match="no ratios for NFE \\[8\\]"):
        table.reset([8], "x")
    with pytest.raises(ValueError, match="needs a reason"):
        table.reset([5], " ")


def test_ratio_table_by_model_name(tmp_path, monkeypatch):
    """``dc_solver`` with ``ratios="<zoo name>"`` reads ``models/<name>/dc_solver_ratios.safetensors``."""
    monkeypatch.setenv("DECODING_MODELS", str(tmp_path))
    _table().save(ratios_path(tmp_path / "toy"))
    solver = get_solver("dc_solver", ratios="toy")
    assert isinstance(solver.ratios, DCRatios) and solver.ratios.model == "toy"
    with pytest.raises(ValueError, match="no DC-Solver ratios"):
        get_solver("dc_solver", ratios="nothing-here")


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
