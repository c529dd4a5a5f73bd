"""Both training losses, minimised on class-conditional Gaussian data by a student that can represent the target exactly.

The student is affine in ``z`` per (class, noise level) with coefficients polynomial in ``w`` (the
stage-1 target is linear in ``w``, the stage-2 one quadratic). Trained with the very loss functions
of the tasks, it must end where the closed form says:

- stage 1 at ``w = 0`` samples what the CONDITIONAL model samples (Meng et al.'s ``w = 0``; the
  engine's ``CFG(0)`` would be the unconditional model), and at ``w = 1`` what CFG at scale 2 samples;
- stage 2: the ``N``-step student's DDIM samples are the ``2N``-step teacher's.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from decoding.core.loop import decode
from decoding.core.types import Prediction, State
from decoding.distill.targets import CFGTeacher
from decoding.models.image import TRAIN_SCHEDULE, schedule_from_config
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.ddim import DDIM
from decoding.solvers.parameterization import to_prediction
from decoding.solvers.timesteps import make_timesteps
from decoding.train.distill_guided import guided_distill_loss
from decoding.train.progressive import Grid, progressive_loss
from tests.distill.closed_form import D, GaussianClasses

pytestmark = pytest.mark.one_thread
SCHEDULE = schedule_from_config(TRAIN_SCHEDULE)
W_RANGE = (0.0, 2.0)


class AffineStudent(nn.Module):
    """``v = sum_j u^j (M_j[y, k] z + b_j[y, k])``, ``u = w - 1``, ``k`` the index of ``lam`` in ``lams`` (float64)."""

    def __init__(self, lams: Tensor, classes: int, degree: int) -> None:
        super().__init__()
        self.lams = lams
        self.M = nn.Parameter(torch.zeros(degree + 1, classes, lams.numel(), D, D, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(degree + 1, classes, lams.numel(), D, dtype=torch.float64))

    def forward(self, z: Tensor, lam: Tensor, labels: Tensor, w: Tensor) -> Tensor:
        k = (lam.double()[:, None] - self.lams[None]).abs().argmin(1)
        u = w.double()[:, None] - 1.0
        q = z.reshape(-1, D)
        out = torch.zeros_like(q)
        for j in range(self.M.shape[0]):
            out = out + u**j * (torch.einsum("bij,bj->bi", self.M[j, labels, k], q) + self.b[j, labels, k])
        return out.reshape(z.shape)


class FixedLevels:
    """Noise levels drawn uniformly from a table (the grid the student is sampled on)."""

    def __init__(self, lams: Tensor) -> None:
        self.lams = lams

    def sample(self, b: int, generator: torch.Generator) -> Tensor:
        return self.lams[torch.randint(0, self.lams.numel(), (b,), generator=generator)]


class FunctionModel:
    """An engine model from ``fn(z, lam, labels, w) -> v`` at one weight ``w``; labels from ``state.memory["cond"]``."""

    def __init__(self, fn, w: float) -> None:  # noqa: ANN001
        self.fn, self.w = fn, w

    def __call__(self, state: State) -> Prediction:
        t = state.t.double()
        lam, alpha, sigma = SCHEDULE.lambda_(t), SCHEDULE.alpha(t), SCHEDULE.sigma(t)
        with torch.no_grad():
            v = self.fn(state.x, lam, state.memory["cond"], torch.full((state.x.shape[0],), self.w))
        return to_prediction(v, "v", state.x, alpha, sigma)


def train(student: nn.Module, loss_fn, data: GaussianClasses, iters: int = 200) -> float:  # noqa: ANN001
    """L-BFGS on one fixed batch of 3,000 class-balanced training points, the loss's draws fixed by one seed.

    The loss is then a least-squares problem whose minimum (zero) is the exact target: L-BFGS reaches it
    to float64 round-off where Adam on fresh batches stalls on the ill-conditioned noisiest levels.
    """
    g = torch.Generator().manual_seed(0)
    xs = torch.cat([data.sample(1000, c, g) for c in range(data.num_classes)])
    ys = torch.arange(data.num_classes).repeat_interleave(1000)
    opt = torch.optim.LBFGS(student.parameters(), lr=1.0, max_iter=iters, history_size=50, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = loss_fn(student, xs, ys, torch.Generator().manual_seed(1))
        loss.backward()
        return loss

    opt.step(closure)
    return float(loss_fn(student, xs, ys, torch.Generator().manual_seed(1)).detach())


def samples(fn, w: float, steps: int, labels: Tensor) -> Tensor:  # noqa: ANN001
    """Deterministic DDIM on the "time" grid from fixed noise."""
    noise = torch.randn(labels.numel(), 1, 2, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    process = ContinuousProcess(SCHEDULE, DDIM(), spacing="time")
    return decode(FunctionModel(fn, w), process, noise, steps=steps, cond=labels, generator=torch.Generator()).x


def test_stage1_student_at_w0_samples_the_conditional_model() -> None:
    data = GaussianClasses()
    teacher = CFGTeacher(data.net, data.num_classes)
    lams = SCHEDULE.lambda_(make_timesteps(SCHEDULE, 8, "time")[:-1])  # the 8-step grid's noise levels
    student = AffineStudent(lams, data.num_classes, degree=1)
    loss = train(student, lambda n, x, y, g: guided_distill_loss(n, teacher, x, y, FixedLevels(lams), W_RANGE, g), data)
    assert loss < 1e-6
    labels = torch.arange(3000) % data.num_classes
    got = samples(student, 0.0, 8, labels)
    conditional = samples(lambda z, lam, y, w: data.net(z, lam, y), 0.0, 8, labels)
    unconditional = samples(lambda z, lam, y, w: data.net(z, lam, torch.full_like(y, data.num_classes)), 0.0, 8, labels)
    assert float((got - conditional).abs().max()) < 1e-4  # same noise -> the same samples, so the same distribution
    assert float((got - unconditional).abs().mean()) > 0.3
    for c in range(data.num_classes):  # and the moments of each class (a distribution-level check)
        a, b = got[labels == c].reshape(-1, D), conditional[labels == c].reshape(-1, D)
        assert torch.allclose(a.mean(0), b.mean(0), atol=1e-3) and torch.allclose(a.T.cov(), b.T.cov(), atol=1e-3)
    guided = samples(teacher, 1.0, 8, labels)  # w = 1: CFG at scale 2
    assert float((samples(student, 1.0, 8, labels) - guided).abs().max()) < 1e-4


def test_stage2_student_takes_half_the_teacher_steps() -> None:
    data = GaussianClasses(seed=2)
    teacher = CFGTeacher(data.net, data.num_classes)  # the exact stage-1 student
    grid = Grid.make(SCHEDULE, 4, torch.device("cpu"), torch.float64)
    assert grid.student_steps == 4
    student = AffineStudent(grid.lam[0:-1:2], data.num_classes, degree=2)
    loss = train(student, lambda n, x, y, g: progressive_loss(n, teacher, x, y, grid, W_RANGE, g), data)
    assert loss < 1e-7
    labels = torch.arange(600) % data.num_classes
    for w in (0.0, 0.7, 2.0):
        want = samples(teacher, w, 8, labels)
        err = float((samples(student, w, 4, labels) - want).abs().max())
        assert err < 1e-3, w
        assert float((samples(teacher, w, 4, labels) - want).abs().max()) > 100 * err  # 4 teacher steps are far off
