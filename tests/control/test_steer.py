"""Steered Diffusion, DPS and replacement on problems with a known answer.

Gaussian prior ``N(mu, v I)`` (16 pixels as a 4x4 image) with its exact denoiser and a linear
Gaussian observation: the posterior ``x0 | y`` is Gaussian with mean
``mu + v A^T (v A A^T + s^2 I)^{-1} (y - A mu)``. With ``A A^T`` a multiple of ``I`` (a mask, 2x2
box downsampling) the steered estimate is exactly ``E[x0 | x_t, y]``, and every DDIM / DDPM step is
affine in ``x_t`` with ``E[x_s] = alpha_s m`` whenever ``E[x_t] = alpha_t m``: started from the
marginal mean ``alpha_T m``, the deterministic sampler lands on the posterior mean up to float64
rounding, at any number of steps. The stochastic sampler's mean is checked against the same value
with a tolerance of 5 standard errors (Monte-Carlo error only) plus ``alpha_T |m|`` (the start
``x_T ~ N(0, I)`` instead of ``N(alpha_T m, .)``, propagated with gain <= 1).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decoding.control import (
    DPS,
    ClassifierLoss,
    Deblur,
    Inpaint,
    Replace,
    Steer,
    SuperResolution,
    box_mask,
    random_mask,
)
from decoding.control.dps import differentiable_call
from decoding.core.loop import decode
from decoding.core.types import State
from decoding.denoisers import ClosedFormModel, GaussianData
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import DDIM, LinearVPSchedule

pytestmark = pytest.mark.one_thread
V, NOISE = 0.5, 0.1
SCHEDULE = LinearVPSchedule()
ALPHA_T = float(SCHEDULE.alpha(torch.tensor(1.0)))


@pytest.fixture(scope="module")
def prior():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(16, generator=g, dtype=torch.float64)
    truth = (mu + V**0.5 * torch.randn(16, generator=g, dtype=torch.float64)).view(1, 1, 4, 4)
    mask = (torch.rand(1, 1, 4, 4, generator=g) < 0.5).double()
    return ClosedFormModel(GaussianData(mu, torch.full((16,), V, dtype=torch.float64))), mu, truth, mask


def posterior_mean(mu: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    gram = V * a @ a.T + NOISE**2 * torch.eye(a.shape[0], dtype=torch.float64)
    return mu + V * a.T @ torch.linalg.solve(gram, y - a @ mu)


def pool_matrix() -> torch.Tensor:
    a = torch.zeros(4, 16, dtype=torch.float64)
    for i in range(2):
        for j in range(2):
            for di in range(2):
                for dj in range(2):
                    a[2 * i + j, (2 * i + di) * 4 + 2 * j + dj] = 0.25
    return a


def cases(mu: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor):  # noqa: ANN201
    sr = SuperResolution(F.avg_pool2d(truth, 2), factor=2, noise=NOISE)
    a_sr = pool_matrix()
    inpaint = Inpaint(truth, mask, noise=NOISE)
    a_m = torch.diag(mask.flatten())[mask.flatten() > 0]
    yield sr, posterior_mean(mu, a_sr, sr.y.flatten())
    yield inpaint, posterior_mean(mu, a_m, a_m @ truth.flatten())


def process(eta: float, **kw) -> ContinuousProcess:  # noqa: ANN003
    return ContinuousProcess(SCHEDULE, DDIM(eta), spacing="time", dtype=torch.float64, **kw)


@pytest.mark.parametrize("steps", [3, 20])
def test_steered_sampler_lands_on_the_gaussian_posterior_mean(prior, steps: int) -> None:  # noqa: ANN001
    model, mu, truth, mask = prior
    for cond, post in cases(mu, truth, mask):
        steer = Steer(cond, data_var=V).wrap(model)
        out = decode(steer, process(0.0), ALPHA_T * post.view(1, 1, 4, 4), steps=steps, seed=0).x.flatten()
        assert torch.allclose(out, post, atol=1e-10), (cond.spec(), (out - post).abs().max())
        # a wrong step size (scale 2) misses it: the test can fail
        off = decode(Steer(cond, scale=2.0, data_var=V).wrap(model), process(0.0), ALPHA_T * post.view(1, 1, 4, 4),
                     steps=steps, seed=0).x.flatten()
        assert (off - post).abs().max() > 1e-3


def test_stochastic_steered_samples_have_the_posterior_mean(prior) -> None:  # noqa: ANN001
    model, mu, truth, mask = prior
    n = 4000
    for cond, post in cases(mu, truth, mask):
        xs = decode(Steer(cond, data_var=V).wrap(model), process(1.0), (n, 1, 4, 4), steps=30, seed=1).x.flatten(1)
        se = xs.std(0) / n**0.5
        assert bool(((xs.mean(0) - post).abs() < 5 * se + ALPHA_T * post.abs()).all()), cond.spec()


def test_zero_loss_is_the_plain_sampler_bit_for_bit(prior) -> None:  # noqa: ANN001
    model, _, truth, _ = prior
    nothing = Inpaint(truth, torch.zeros(1, 1, 4, 4, dtype=torch.float64))  # no known pixel: L = 0, grad = 0
    for eta in (0.0, 1.0):
        plain = decode(model, process(eta), (8, 1, 4, 4), steps=10, seed=3).x
        for wrapper in (Steer(nothing), DPS(nothing)):
            steered = decode(wrapper.wrap(model), process(eta), (8, 1, 4, 4), steps=10, seed=3).x
            assert torch.equal(plain, steered), wrapper.spec()


def test_conditions_combine_by_summing_losses(prior) -> None:  # noqa: ANN001
    model, _, truth, mask = prior
    a, b = Inpaint(truth, mask, NOISE), SuperResolution(F.avg_pool2d(truth, 2), 2, NOISE)
    state = State(x=torch.randn(3, 1, 4, 4, dtype=torch.float64), t=torch.full((3,), 0.4, dtype=torch.float64),
                  done=torch.zeros(3, dtype=torch.bool), memory={"schedule": SCHEDULE})
    both = Steer(a, b, data_var=V).wrap(model)(state)
    x = model(state).x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((a.loss(x) + b.loss(x)).sum(), x)
    alpha, sigma = float(SCHEDULE.alpha(torch.tensor(0.4))), float(SCHEDULE.sigma(torch.tensor(0.4)))
    r2 = V * sigma**2 / (alpha**2 * V + sigma**2)
    step = r2 / (1 + r2 * (a.curvature + b.curvature))
    assert torch.allclose(both.x0, model(state).x0 - step * g)
    assert torch.allclose(alpha * both.x0 + sigma * both.eps, state.x)  # consistent with x_t


def test_dps_moves_the_next_ddpm_state_by_zeta_times_the_gradient_through_the_denoiser(prior) -> None:  # noqa: ANN001
    """Chung et al.'s update: x_s = DDPM(x_t, x0_hat) - zeta grad_{x_t} ||A x0_hat(x_t) - y||; for the
    Gaussian denoiser ``d x0 / d x_t = alpha v / (alpha^2 v + sigma^2) I``, so the gradient is known."""
    model, _, truth, mask = prior
    cond, zeta = Inpaint(truth, mask, NOISE), 0.7
    grid = torch.tensor([0.5, 0.3, 0.0], dtype=torch.float64)
    t = grid[:1].expand(2)
    state = State(x=torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), t=t,
                  done=torch.zeros(2, dtype=torch.bool), memory={"schedule": SCHEDULE, "grid": grid})
    alpha, sigma = float(SCHEDULE.alpha(grid[0])), float(SCHEDULE.sigma(grid[0]))
    r = mask * (model(state).x0 - truth)
    grad = alpha * V / (alpha**2 * V + sigma**2) * r / r.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    proc = process(1.0)
    plain = proc.step(state, model(state), grid[1], torch.Generator().manual_seed(5)).x
    guided = proc.step(state, DPS(cond, scale=zeta).wrap(model)(state), grid[1], torch.Generator().manual_seed(5)).x
    assert torch.allclose(guided - plain, -zeta * grad, atol=1e-12)
    with pytest.raises(RuntimeError, match="inference_mode"), torch.inference_mode():
        DPS(cond).wrap(model)(state)


def test_dps_refuses_a_model_without_gradients(prior) -> None:  # noqa: ANN001
    model, _, truth, mask = prior

    class Frozen:
        def __call__(self, state: State):  # noqa: ANN204
            with torch.no_grad():
                return model(state)

    state = State(x=torch.randn(1, 1, 4, 4, dtype=torch.float64), t=torch.full((1,), 0.5, dtype=torch.float64),
                  done=torch.zeros(1, dtype=torch.bool), memory={"schedule": SCHEDULE})
    with pytest.raises(ValueError, match="without gradients"):
        differentiable_call(Frozen(), state)


def test_replacement_keeps_the_known_pixels_and_projects_super_resolution(prior) -> None:  # noqa: ANN001
    model, _, truth, mask = prior
    out = decode(Replace(Inpaint(truth, mask)).wrap(model), process(0.0), (4, 1, 4, 4), steps=8, seed=0).x
    assert torch.allclose(out * mask, (truth * mask).expand_as(out), atol=1e-9)
    sr = SuperResolution(F.avg_pool2d(truth, 2), 2)
    out = decode(Replace(sr).wrap(model), process(0.0), (4, 1, 4, 4), steps=8, seed=0).x
    assert torch.allclose(F.avg_pool2d(out, 2), sr.y.expand(4, -1, -1, -1), atol=1e-9)
    with pytest.raises(ValueError, match="projection"):
        Replace(Deblur(truth))


def test_operators_observe_and_report_their_curvature() -> None:
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    blur = Deblur(torch.zeros(1, 1, 28, 28), sigma=1.5, noise=0.1)
    z = torch.randn(1, 1, 28, 28)
    for _ in range(30):  # power iteration on A^T A (linear part of the blur)
        z = z.requires_grad_(True)
        (g,) = torch.autograd.grad((blur.observe(z) - blur.observe(torch.zeros_like(z))).pow(2).sum() / 2, z)
        z = (g / g.norm()).detach()
    assert float((blur.observe(z) - blur.observe(torch.zeros_like(z))).norm()) <= 1.0 + 1e-5  # ||A|| <= 1
    assert blur.curvature == pytest.approx(100.0)
    sr = SuperResolution(F.avg_pool2d(x, 4), 4, noise=0.1)
    assert sr.curvature == pytest.approx(1 / (16 * 0.01)) and torch.allclose(sr.loss(x), torch.zeros(2), atol=1e-9)
    m = box_mask(28)
    assert m.shape == (1, 1, 28, 28) and float(m.mean()) == pytest.approx(0.75)
    r = random_mask(3, 0.3, generator=torch.Generator().manual_seed(0))
    assert r.shape == (3, 1, 28, 28) and abs(float(r.mean()) - 0.3) < 0.05
    with pytest.raises(ValueError, match="noise"):
        Inpaint(x, m, noise=0.0)
    with pytest.raises(ValueError, match="0 \\(unknown\\) or 1"):
        Inpaint(x, m * 0.5)
    with pytest.raises(ValueError, match="rows"):
        Inpaint(x, m).loss(torch.zeros(3, 1, 28, 28))


def test_classifier_loss_steers_towards_its_class() -> None:
    cond = ClassifierLoss(7)
    x = torch.zeros(4, 1, 28, 28) - 0.5
    g = torch.Generator().manual_seed(0)
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    before = cond.agreement(x)
    for _ in range(20):
        xi = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(cond.loss(xi).sum(), xi)
        x = x - 0.05 * grad
    assert bool((cond.agreement(x) > before).all())
    with pytest.raises(ValueError, match="label"):
        ClassifierLoss(10)
