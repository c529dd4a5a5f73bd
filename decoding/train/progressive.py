"""Stage 2 of guided distillation (Meng et al., arXiv 2210.03142, sec. 3.2): ``decoding train distill-progressive``.

One round of progressive distillation (Salimans & Ho, arXiv 2202.00512, alg. 2) at the same
guidance weight: the teacher (a stage-1 student, or the previous round's) samples with ``2N`` DDIM
steps, the student (initialised from the teacher) learns to take ``N``: at a point ``t_i`` of the
student's grid, one student DDIM step to ``t_{i+1}`` must land where two teacher DDIM steps through
the midpoint land (:func:`~decoding.distill.targets.two_step_target`). ``z_t`` is a training image
noised to ``t_i``, ``i ~ U{0..N-1}``, ``w ~ U[w_min, w_max]``.

The grids are the engine's ``"time"`` spacing (uniform in the schedule's time, the last point the
clean data), which nests: the ``N``-step grid is every other point of the ``2N``-step one (checked).
Every round is one run, saved as a student folder; the rounds 64 -> 32 -> ... -> 1 chain them:

    decoding train distill-progressive --teacher runs/distill/stage1 --teacher-steps 64 --minutes 2 \\
        --device cuda --checkpoint runs/distill/steps-32-ck --out runs/distill/steps-32
    decoding train distill-progressive --teacher runs/distill/steps-32 --minutes 2 --device cuda \\
        --checkpoint runs/distill/steps-16-ck --out runs/distill/steps-16
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from decoding.distill.targets import GuidedNet, two_step_target
from decoding.solvers.timesteps import make_timesteps
from decoding.train.distill_base import KIND, DistillConfig, DistillTask, noised, sample_w
from decoding.train.task import require_each

SPACING = "time"


@dataclass
class ProgressiveConfig(DistillConfig):
    # the CLI reads per-field help from the docstring's Attributes section: the base's plus this one
    __doc__ = (DistillConfig.__doc__ or "").rstrip() + """
        teacher_steps: the teacher's DDIM steps 2N (even); the student gets N. Default: the teacher's
            own steps (a stage-1 teacher has none: give them, e.g. 64).
    """

    teacher_steps: int | None = None

    def check(self) -> None:
        super().check()
        require_each(self, ("teacher_steps",), lambda v: v is None or (v >= 2 and v % 2 == 0), "be an even number >= 2")


def nested_grids(schedule: Any, student_steps: int) -> torch.Tensor:
    """The teacher's ``2N + 1`` times (float64); raises unless its even points are the student's ``N``-step grid."""
    teacher = make_timesteps(schedule, 2 * student_steps, SPACING)
    student = make_timesteps(schedule, student_steps, SPACING)
    if not torch.allclose(teacher[::2], student, rtol=0, atol=1e-9):
        raise ValueError(f"the {SPACING!r} grids of {student_steps} and {2 * student_steps} steps do not nest on {schedule.key}")
    return teacher


@dataclass(frozen=True)
class Grid:
    """The teacher's ``2N``-step grid on the training device: ``lam``, ``alpha``, ``sigma`` ``(2N + 1,)`` float32
    (``lam = +inf`` at the data end, never fed to a network)."""

    lam: Tensor
    alpha: Tensor
    sigma: Tensor

    @classmethod
    def make(cls, schedule: Any, student_steps: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Grid:
        ts = nested_grids(schedule, student_steps)
        return cls(*(f(ts).to(device, dtype) for f in (schedule.lambda_, schedule.alpha, schedule.sigma)))

    @property
    def student_steps(self) -> int:
        return (int(self.lam.numel()) - 1) // 2


def progressive_loss(
    net: Callable[..., Tensor], teacher: GuidedNet, x0: Tensor, labels: Tensor, grid: Grid, w_range: tuple[float, float],
    generator: torch.Generator, channels_last: bool = False,
) -> Tensor:
    """Stage-2 loss: v-MSE between the student at a point of its ``N``-step grid and the two-teacher-step target.

    Args:
        net: the student ``net(z, lam, labels, w) -> v``; teacher: the same signature, frozen.
        x0: ``(B, C, H, W)`` training images; labels ``(B,)``.
        grid: the teacher's ``2N``-step grid; the student's point ``i ~ U{0..N-1}`` is its point ``2i``.
        generator: draws w, then the grid point, then the noise.
    """
    b = x0.shape[0]
    w = sample_w(b, w_range, generator)
    s = 2 * torch.randint(0, grid.student_steps, (b,), generator=generator, device=generator.device)
    m, t = s + 1, s + 2
    z = noised(x0, grid.alpha[s], grid.sigma[s], generator, channels_last)
    with torch.no_grad():
        target = two_step_target(teacher, z, labels, w, (grid.lam[s], grid.lam[m]), (grid.alpha[s], grid.alpha[m], grid.alpha[t]),
                                 (grid.sigma[s], grid.sigma[m], grid.sigma[t]))
    return F.mse_loss(net(z, grid.lam[s], labels, w).to(target.dtype), target)  # in z's dtype (float32 in training)


class ProgressiveTask(DistillTask):
    """Stage 2: one halving of a distilled student's steps."""

    stage: ClassVar[int] = 2

    def check_teacher(self, config: dict[str, Any]) -> tuple[float, float]:
        c = self.config
        if config.get("kind") != KIND or not config["unet"].get("guidance_embedding"):
            raise ValueError(f"stage 2 halves the steps of a distilled student; {c.teacher} is not one "
                             "(train one first: decoding train distill-guided --teacher MODEL)")
        d = config.get("distill", {})
        own = d.get("steps")
        if own is None and c.teacher_steps is None:
            raise ValueError(f"{c.teacher} is a stage-1 student (any number of steps): give --teacher-steps 2N, e.g. 64")
        if own is not None and c.teacher_steps not in (None, own):
            raise ValueError(f"{c.teacher} is a {own}-step student; --teacher-steps {c.teacher_steps} differs (drop it)")
        steps = own if own is not None else c.teacher_steps
        if steps < 2 or steps % 2:
            raise ValueError(f"the teacher takes {steps} steps: a round needs an even number >= 2")
        self.teacher_steps = int(steps)
        self.student_steps = self.teacher_steps // 2
        lo, hi = d["w_range"]
        return float(lo), float(hi)

    def setup_stage(self, device: torch.device) -> None:
        self.grid = Grid.make(self.schedule, self.student_steps, device)

    def distill_loss(self, net: Callable[..., Tensor], x0: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
        c = self.config
        return progressive_loss(net, self.teacher, x0, labels, self.grid, self.w_range, generator, c.channels_last)

    def card_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({"steps": self.student_steps, "teacher_steps": self.teacher_steps, "spacing": SPACING},
                {"steps": self.student_steps, "sampler": "deterministic"})


if __name__ == "__main__":
    raise SystemExit("decoding.train.progressive is a training task: run `decoding train distill-progressive --help`")
