"""The distillation targets against closed forms on class-conditional Gaussian data (float64), and CFG against GuidedModel."""

from __future__ import annotations

import pytest
import torch

from decoding.core.types import State
from decoding.distill.targets import (
    CFGTeacher,
    cfg_scale,
    ddim_v,
    meng_weight,
    step_target,
    two_step_target,
    x0_to_v,
)
from decoding.models.image import TRAIN_SCHEDULE, ImageDiffusionModel, schedule_from_config
from decoding.solvers.ddim import ddim_update
from decoding.solvers.timesteps import make_timesteps
from decoding.wrappers.guidance import CFG, GuidedModel
from tests.distill.closed_form import D, GaussianClasses
from tests.distill.helpers import random_unet

pytestmark = pytest.mark.one_thread
SCHEDULE = schedule_from_config(TRAIN_SCHEDULE)


def grid_rows(student_steps: int, s_index: torch.Tensor) -> tuple:
    """``lam (s, m)``, ``alpha (s, m, t)``, ``sigma (s, m, t)`` per row of the 2N-step "time" grid (float64)."""
    ts = make_timesteps(SCHEDULE, 2 * student_steps, "time")
    lam, alpha, sigma = SCHEDULE.lambda_(ts), SCHEDULE.alpha(ts), SCHEDULE.sigma(ts)
    s, m, t = s_index, s_index + 1, s_index + 2
    return (lam[s], lam[m]), (alpha[s], alpha[m], alpha[t]), (sigma[s], sigma[m], sigma[t])


def eigen_target(data: GaussianClasses, z: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, alpha: tuple,
                 sigma: tuple) -> torch.Tensor:
    """The student's v-target written out per eigen-coordinate, row by row, from scalars (independent of the code under test).

    In the basis U a class denoiser is ``p = m_y + g_y (q - a m_y)``, ``g_y = a e_y / (a^2 e_y + s^2)``; the guided one
    ``(1 + w) p_c - w p_u = B + G q`` is affine; a DDIM step ``q' = r q + (a' - r a) (B + G q)``, ``r = s' / s``, too.
    """
    null = data.num_classes
    out = torch.empty(z.shape[0], D, dtype=torch.float64)
    for i in range(z.shape[0]):
        q = data.U.T @ z[i].reshape(D)
        wi, c = float(w[i]), int(labels[i])
        a = [float(v[i]) for v in alpha]
        s = [float(v[i]) for v in sigma]
        lin, off = torch.ones(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)  # q_k = lin * q + off
        for k in range(2):
            ak, sk, an, sn = a[k], s[k], a[k + 1], s[k + 1]
            gain, bias = torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
            for y, coef in ((c, 1 + wi), (null, -wi)):
                e, my = data.evals[y], data.U.T @ data.means[y]
                g = ak * e / (ak * ak * e + sk * sk)
                gain += coef * g
                bias += coef * (1 - ak * g) * my
            r = sn / sk
            lin, off = (r + (an - r * ak) * gain) * lin, (r + (an - r * ak) * gain) * off + (an - r * ak) * bias
        q_t = lin * q + off
        big_r = s[2] / s[0]
        x_tilde = (q_t - big_r * q) / (a[2] - big_r * a[0])
        out[i] = data.U @ ((a[0] * q - x_tilde) / s[0])
    return out.reshape(z.shape)


@pytest.mark.parametrize("student_steps", [1, 2, 4, 32])
def test_two_step_target_equals_the_closed_form(student_steps: int) -> None:
    """Every student grid point, the last one (ending at the data) included, to ~1e-10 in float64."""
    data = GaussianClasses()
    g = torch.Generator().manual_seed(student_steps)
    b = 4 * student_steps
    s_index = 2 * (torch.arange(b) % student_steps)
    labels = torch.randint(0, data.num_classes, (b,), generator=g)
    w = 3 * torch.rand(b, generator=g, dtype=torch.float64)
    lam, alpha, sigma = grid_rows(student_steps, s_index)
    z = torch.randn(b, 1, 2, 2, generator=g, dtype=torch.float64)
    got = two_step_target(CFGTeacher(data.net, data.num_classes), z, labels, w, lam, alpha, sigma)
    want = eigen_target(data, z, labels, w, alpha, sigma)
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) <= 1e-10 * scale


def test_one_student_step_reproduces_two_teacher_steps() -> None:
    """DDIM with the target lands where two DDIM steps of the guided teacher land (the engine's own DDIM update)."""
    data = GaussianClasses(seed=1)
    teacher = CFGTeacher(data.net, data.num_classes)
    g = torch.Generator().manual_seed(0)
    n = 8
    s_index = 2 * torch.arange(n)
    labels = torch.randint(0, data.num_classes, (n,), generator=g)
    w = 2 * torch.rand(n, generator=g, dtype=torch.float64)
    lam, alpha, sigma = grid_rows(n, s_index)
    z = torch.randn(n, 1, 2, 2, generator=g, dtype=torch.float64)
    v_tilde = two_step_target(teacher, z, labels, w, lam, alpha, sigma)
    student = ddim_v(z, v_tilde, alpha[0], sigma[0], alpha[2], sigma[2])
    for i in range(n):  # two teacher steps, one row at a time, with decoding.solvers.ddim
        zi = z[i : i + 1]
        for k in range(2):
            a, s, a_next, s_next = (float(v[i]) for v in (alpha[k], sigma[k], alpha[k + 1], sigma[k + 1]))
            v = teacher(zi, lam[k][i : i + 1], labels[i : i + 1], w[i : i + 1])
            x0, eps = a * zi - s * v, s * zi + a * v
            zi = ddim_update(x0, eps, a, s, a_next, s_next)
        assert float((student[i : i + 1] - zi).abs().max()) <= 1e-10 * float(zi.abs().max()), i


def test_step_target_inverts_ddim_and_x0_to_v() -> None:
    g = torch.Generator().manual_seed(2)
    z, x = (torch.randn(5, 1, 2, 2, generator=g, dtype=torch.float64) for _ in range(2))
    a_s, a_t = 0.3, 0.8
    s_s, s_t = (1 - a_s**2) ** 0.5, (1 - a_t**2) ** 0.5  # VP: alpha^2 + sigma^2 = 1
    v = x0_to_v(z, x, a_s, s_s)
    assert torch.allclose(a_s * z - s_s * v, x, atol=1e-12)  # x0 = alpha z - sigma v
    z_t = ddim_v(z, v, a_s, s_s, a_t, s_t)
    assert torch.allclose(step_target(z, a_s, s_s, z_t, a_t, s_t), x, atol=1e-12)
    assert torch.allclose(z_t, ddim_update(x, (z - a_s * x) / s_s, a_s, s_s, a_t, s_t), atol=1e-12)


def test_weight_convention() -> None:
    """Meng et al.'s w = 0 is the conditional model (CFG scale 1); w = 1 is CFG scale 2."""
    assert cfg_scale(0.0) == 1.0 and cfg_scale(0.5) == 1.5 and meng_weight(3.0) == 2.0
    data = GaussianClasses()
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64)
    lam, labels = torch.linspace(-3, 3, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    guided = CFGTeacher(data.net, data.num_classes)(z, lam, labels, torch.zeros(6))
    assert torch.equal(guided, data.net(z, lam, labels))  # w = 0: exactly the conditional model
    uncond = data.net(z, lam, torch.full_like(labels, data.num_classes))
    assert float((guided - uncond).abs().max()) > 0.1  # and not the unconditional one (the engine's CFG(0))


@pytest.mark.parametrize("step", [0, 5])
def test_cfg_teacher_is_guided_model_with_scale_one_plus_w(step: int) -> None:
    """Per-row weights equal the engine's CFG wrapper (the teacher of the issue) at scale 1 + w, row by row."""
    net = random_unet()
    model = ImageDiffusionModel(net, SCHEDULE, "v")
    grid = make_timesteps(SCHEDULE, 8, "time")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 1, 28, 28, generator=g)
    labels = torch.tensor([1, 7, 3, 9])
    w = torch.tensor([0.0, 0.5, 2.0, 3.5])
    lam = SCHEDULE.lambda_(grid[step]).float().expand(4)
    alpha, sigma = float(SCHEDULE.alpha(grid[step])), float(SCHEDULE.sigma(grid[step]))
    with torch.no_grad():
        v = CFGTeacher(net, net.cfg.null_class)(x, lam, labels, w)
    for i in range(4):
        state = State(x=x[i : i + 1], t=grid[step].expand(1), done=torch.zeros(1, dtype=torch.bool), step=step,
                      memory={"schedule": SCHEDULE, "grid": grid, "cond": labels[i : i + 1]})
        pred = GuidedModel(model, model.null_label, cfg=CFG(cfg_scale(float(w[i]))))(state)
        assert torch.allclose(alpha * x[i : i + 1] - sigma * v[i : i + 1], pred.x0, atol=2e-5)
        assert torch.allclose(sigma * x[i : i + 1] + alpha * v[i : i + 1], pred.eps, atol=2e-5)
    other = GuidedModel(model, model.null_label, cfg=CFG(0.5))(
        State(x=x[1:2], t=grid[step].expand(1), done=torch.zeros(1, dtype=torch.bool), step=step,
              memory={"schedule": SCHEDULE, "grid": grid, "cond": labels[1:2]}))
    assert not torch.allclose(alpha * x[1:2] - sigma * v[1:2], other.x0, atol=1e-3)  # CFG(w) is another model
