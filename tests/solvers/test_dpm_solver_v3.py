"""DPM-Solver-v3: reduction to DPM-Solver++, statistics against their analytic values, accuracy, errors."""

from __future__ import annotations

import pytest
import torch

from decoding import decode
from decoding.denoisers import ClosedFormModel, GaussianData
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import (
    EMS,
    DiscreteVPSchedule,
    DPMSolverPP,
    DPMSolverV3,
    LinearVPSchedule,
    UniPC,
    compute_ems,
)
from decoding.solvers.ems import ems_path
from decoding.solvers.registry import get_solver
from tests.solvers.problems import gaussian, lambda_grid, mixture, noise, rmse, slope


@pytest.mark.parametrize("schedule", [DiscreteVPSchedule(), LinearVPSchedule()])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("knots", [2, 40])
def test_degenerate_statistics_give_dpm_solver_pp(schedule, order, knots):
    """l = 1, s = b = 0: equal to DPM-Solver++ with exactly integrated interpolants, at every step."""
    data = mixture(5)
    x = noise(32, 5)
    ems = EMS.degenerate(schedule, (5,), knots=knots)
    for steps in (order, 7):
        ours, ref = [], []
        v3 = ContinuousProcess(schedule, DPMSolverV3(ems, order, corrector=False, lower_order_final=False))
        pp = ContinuousProcess(schedule, DPMSolverPP(order, "heun", lower_order_final=False))
        decode(ClosedFormModel(data), v3, x, steps=steps, callback=lambda i, s, p, out=ours: out.append(s.x))
        decode(ClosedFormModel(data), pp, x, steps=steps, callback=lambda i, s, p, out=ref: out.append(s.x))
        assert max(float((a - b).abs().max()) for a, b in zip(ours, ref, strict=True)) < 1e-10


def _whitened(n: int, d: int) -> torch.Tensor:
    z = noise(n, d, seed=9)
    z = z - z.mean(0)
    chol = torch.linalg.cholesky(z.T @ z / n)
    return torch.linalg.solve(chol, z.T).T


def _analytic(data: GaussianData, lam: torch.Tensor):
    """l, s, b of N(mu, Sigma): f = c + M z along each trajectory (z fixed), so s = (M'.M)/|M|^2, b = c' - s c.

    With C = alpha^2 Sigma + sigma^2 I: l = sigma^2 diag(C^-1), c = -l mu, M = (sigma^2 C^-1/2 - diag(l) C^1/2) / alpha.
    """
    e, u, mu = data.evals, data.evecs, data.mean

    def parts(lam_):
        a2, s2 = torch.sigmoid(2 * lam_), torch.sigmoid(-2 * lam_)
        var = a2 * e + s2
        l_ = s2 * torch.diagonal(u @ torch.diag(1 / var) @ u.T)
        m = (s2 * (u @ torch.diag(var.rsqrt()) @ u.T) - torch.diag(l_) @ (u @ torch.diag(var.sqrt()) @ u.T)) / a2.sqrt()
        return l_, -l_ * mu, m

    l_, c, m = parts(lam)
    (_, c_p, m_p), (_, c_m, m_m) = parts(lam + 1e-5), parts(lam - 1e-5)
    dc, dm = (c_p - c_m) / 2e-5, (m_p - m_m) / 2e-5  # lambda-derivatives of closed forms (error ~1e-10)
    s = (dm * m).sum(1) / (m * m).sum(1)
    return l_, s, dc - s * c


def test_statistics_of_a_gaussian_match_analytic_values():
    data = gaussian(3, seed=4)
    schedule = LinearVPSchedule()
    ems = compute_ems(ClosedFormModel(data), schedule, (3,), n_samples=32, knots=200, exact_jacobian=True,
                      noise=_whitened(32, 3), ridge=0.0)
    last = ems.lambdas.numel() - 1
    for j in [*range(0, last, 10), last - 1, last]:
        l_, s, b = _analytic(data, ems.lambdas[j].clone())
        assert torch.allclose(ems.l[j], l_, atol=1e-10), j
        tol = 0.02 if 0 < j < last else 0.05  # one-sided differences at the ends
        assert ((ems.s[j] - s).abs() / (s.abs() + 0.1)).max() < tol, (j, ems.s[j], s)
        assert ((ems.b[j] - b).abs() / (b.abs() + 0.01)).max() < tol, (j, ems.b[j], b)


def test_diagonal_gaussian_statistics_are_exact():
    """Diagonal covariance: l is the exact Jacobian, f = -l mu is deterministic, so s = 0 and b = -l' mu."""
    data = GaussianData(torch.tensor([0.7, -1.2]), torch.tensor([0.2, 2.0]))
    schedule = DiscreteVPSchedule()
    ems = compute_ems(ClosedFormModel(data), schedule, (2,), n_samples=8, knots=200, probes=2)
    lam = ems.lambdas.clone()
    a2, s2 = torch.sigmoid(2 * lam)[:, None], torch.sigmoid(-2 * lam)[:, None]
    l_exact = s2 / (a2 * torch.tensor([0.2, 2.0], dtype=torch.float64) + s2)
    assert torch.allclose(ems.l, l_exact, atol=1e-9)
    assert torch.equal(ems.s, torch.zeros_like(ems.s))
    def l_of(v):
        return torch.sigmoid(-2 * v) / (torch.sigmoid(2 * v) * torch.tensor([0.2, 2.0], dtype=torch.float64) + torch.sigmoid(-2 * v))

    b_exact = torch.stack([-(l_of(v + 1e-5) - l_of(v - 1e-5)) / 2e-5 * data.mean for v in lam])
    rel = (ems.b - b_exact).abs() / b_exact.abs()  # central differences in lambda: O(dlambda^2)
    assert rel[1:-1].max() < 5e-3 and rel.max() < 3e-2, rel.max()


@pytest.fixture(scope="module")
def gauss_ems():
    data = gaussian(3, seed=4)
    schedule = LinearVPSchedule()
    ems = compute_ems(ClosedFormModel(data), schedule, (3,), n_samples=32, knots=200, exact_jacobian=True,
                      noise=_whitened(32, 3), ridge=0.0)
    return data, schedule, ems


def test_v3_with_statistics_is_more_accurate_at_few_steps(gauss_ems):
    data, schedule, ems = gauss_ems
    x = noise(512, 3, seed=3)
    a0, s0 = float(schedule.alpha(1.0)), float(schedule.sigma(1.0))
    exact = data.ode_map(x, a0, s0, float(schedule.alpha(0.05)), float(schedule.sigma(0.05)))

    def err(solver, n):
        proc = ContinuousProcess(schedule, solver, timesteps=lambda_grid(schedule, 1.0, 0.05, n))
        return rmse(decode(ClosedFormModel(data), proc, x, steps=n).x, exact)

    v3 = err(DPMSolverV3(ems, 2, lower_order_final=False), 6)
    assert v3 < err(DPMSolverPP(2, lower_order_final=False), 6) / 5
    assert v3 < err(UniPC(2, lower_order_final=False), 6) / 5
    ns = [6, 12, 24]
    e1 = [err(DPMSolverV3(ems, 1, corrector=False, lower_order_final=False), n) for n in ns]
    e2 = [err(DPMSolverV3(ems, 2, corrector=False, lower_order_final=False), n) for n in ns]
    assert abs(slope(ns, e1) - 1) < 0.3 and abs(slope(ns, e2) - 2) < 0.5, (e1, e2)


def test_statistics_save_load_and_mismatches(gauss_ems, tmp_path):
    data, schedule, ems = gauss_ems
    path = ems.save(ems_path(tmp_path / "gauss-model"))
    back = EMS.load(tmp_path / "gauss-model")
    assert path.name == "dpm_solver_v3_ems.safetensors" and back.schedule_key == schedule.key
    assert torch.equal(back.s, ems.s) and back.shape == (3,)
    model = ClosedFormModel(data)
    with pytest.raises(ValueError, match="schedule"):
        decode(model, ContinuousProcess(DiscreteVPSchedule(), DPMSolverV3(back)), (2, 3), steps=4, seed=0)
    with pytest.raises(ValueError, match="shape"):
        decode(ClosedFormModel(gaussian(4)), ContinuousProcess(schedule, DPMSolverV3(back)), (2, 4), steps=4, seed=0)
    narrow = EMS(ems.lambdas[50:150], ems.l[50:150], ems.s[50:150], ems.b[50:150], schedule.key)
    with pytest.raises(ValueError, match="cover lambda"):
        decode(model, ContinuousProcess(schedule, DPMSolverV3(narrow)), (2, 3), steps=4, seed=0)
    with pytest.raises(ValueError, match="model"):
        DPMSolverV3(back, model="another-model")
    with pytest.raises(ValueError, match="statistics"):
        get_solver("dpm_solver_v3")
    with pytest.raises(ValueError, match="no DPM-Solver-v3 statistics"):
        EMS.load(tmp_path / "missing")
    assert isinstance(get_solver("dpm_solver_v3", ems=path, order=3), DPMSolverV3)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_update_runs_on_the_samples_device(gauss_ems, order):
    """The per-step coefficients (computed on the CPU) follow the samples to their device.

    The "meta" device stands in for CUDA on a CPU-only machine: any CPU tensor left in the update
    (the coefficients, the history's lambda differences) raises a device mismatch there, as it
    did on the H100 (issue 24's FID table run).
    """
    from decoding.solvers.dpm_solver_v3 import v3_update

    _, schedule, ems = gauss_ems
    st = DPMSolverV3(ems, order)._stats
    lams = [float(v) for v in ems.lambdas[[100, 90, 80]]]
    x = torch.empty(4, 3, device="meta")
    fs = [torch.empty(4, 3, device="meta") for _ in range(order)]
    out = v3_update(st, x, 0.5, 0.7, lams[0], lams[0] + 0.3, fs, lams[:order])
    assert out.device.type == "meta" and out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.gpu
@pytest.mark.parametrize("order", [1, 2, 3])
def test_update_on_cuda_equals_cpu(gauss_ems, order):
    from decoding.solvers.dpm_solver_v3 import v3_update

    _, _, ems = gauss_ems
    st = DPMSolverV3(ems, order)._stats
    lams = [float(v) for v in ems.lambdas[[100, 90, 80]]]
    g = torch.Generator().manual_seed(0)
    x, fs = torch.randn(8, 3, generator=g), [torch.randn(8, 3, generator=g) for _ in range(order)]
    cpu = v3_update(st, x, 0.5, 0.7, lams[0], lams[0] + 0.3, fs, lams[:order])
    gpu = v3_update(st, x.cuda(), 0.5, 0.7, lams[0], lams[0] + 0.3, [f.cuda() for f in fs], lams[:order])
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-6)
