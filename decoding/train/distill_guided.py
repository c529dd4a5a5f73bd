"""Stage 1 of guided distillation (Meng et al., arXiv 2210.03142, sec. 3.1): ``decoding train distill-guided``.

One w-conditioned student ``v(z_t, t, w)`` learns the classifier-free-guided prediction
``(1 + w) v_c - w v_u`` of a class-conditional teacher (:class:`~decoding.distill.targets.CFGTeacher`,
the combination of :class:`~decoding.wrappers.guidance.GuidedModel` with one weight per row), for
``w ~ U[w_min, w_max]``, noise levels drawn as in the teacher's training (``noise_levels``) and
training images noised by the teacher's schedule. The student then costs one call per step where
CFG costs two; it samples with any solver and any number of steps.

    decoding train distill-guided --teacher fashion-large --minutes 4 --device cuda \\
        --checkpoint runs/distill/stage1-ck --out runs/distill/stage1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from decoding.distill.targets import CFGTeacher, GuidedNet
from decoding.solvers.schedules import DiscreteVPSchedule
from decoding.train.distill_base import KIND, DistillConfig, DistillTask, noised, sample_w
from decoding.train.image import NOISE_LEVELS, NoiseLevels, alpha_sigma
from decoding.train.task import require_each


def guided_distill_loss(
    net: Callable[..., Tensor], teacher: GuidedNet, x0: Tensor, labels: Tensor, levels: Any, w_range: tuple[float, float],
    generator: torch.Generator, channels_last: bool = False,
) -> Tensor:
    """Stage-1 loss: v-MSE between the student and the guided teacher at the same ``(z_t, t, w)``.

    Args:
        net: the student ``net(z, lam, labels, w) -> v``.
        teacher: ``teacher(z, lam, labels, w) -> v`` (a :class:`~decoding.distill.targets.CFGTeacher`).
        x0: ``(B, C, H, W)`` training images; labels ``(B,)``.
        levels: ``levels.sample(B, generator) -> (B,)`` noise levels ``lambda`` (:class:`~decoding.train.image.NoiseLevels`).
        w_range: Meng et al.'s weights are drawn uniformly from it.
        generator: draws w, then lambda, then the noise.
    """
    w = sample_w(x0.shape[0], w_range, generator)
    lam = levels.sample(x0.shape[0], generator)
    z = noised(x0, *alpha_sigma(lam), generator, channels_last)
    with torch.no_grad():
        target = teacher(z, lam, labels, w)
    return F.mse_loss(net(z, lam, labels, w).to(target.dtype), target)  # in z's dtype (float32 in training)


@dataclass
class GuidedDistillConfig(DistillConfig):
    # the CLI reads per-field help from the docstring's Attributes section: the base's plus these
    __doc__ = (DistillConfig.__doc__ or "").rstrip() + """
        noise_levels, p_mean, p_std: training noise-level distribution, as for the teacher
            (``cosine``: t ~ U[0, N-1] of the schedule; ``lognormal``: EDM's, see decoding.train.image).
    """

    noise_levels: str = "cosine"
    p_mean: float = -0.86
    p_std: float = 1.2

    def check(self) -> None:
        super().check()
        require_each(self, ("noise_levels",), lambda v: v in NOISE_LEVELS, f"be one of {', '.join(NOISE_LEVELS)}")


class GuidedDistillTask(DistillTask):
    """Stage 1: a w-conditioned student of a CFG teacher."""

    stage: ClassVar[int] = 1

    def check_teacher(self, config: dict[str, Any]) -> tuple[float, float]:
        if config.get("kind") == KIND or config["unet"].get("guidance_embedding"):
            raise ValueError(f"stage 1 distils a plain image diffusion model; {self.config.teacher} is already a distilled student "
                             "(use decoding train distill-progressive to halve its steps)")
        if not isinstance(self.schedule, DiscreteVPSchedule):
            raise ValueError(f"stage 1 draws noise levels on a discrete schedule; {self.config.teacher} uses {self.schedule.key}")
        c = self.config
        return 0.0, max(4.0, c.w_max or 0.0)  # default [0, 4]; any w_max >= 0 may be asked for

    def setup_stage(self, device: torch.device) -> None:
        c = self.config
        assert isinstance(self.schedule, DiscreteVPSchedule)
        self.levels = NoiseLevels(self.schedule, device, c.noise_levels, c.p_mean, c.p_std)
        self.cfg_teacher = CFGTeacher(self.teacher, self.teacher.cfg.null_class)

    def distill_loss(self, net: Callable[..., Tensor], x0: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
        c = self.config
        return guided_distill_loss(net, self.cfg_teacher, x0, labels, self.levels, self.w_range, generator, c.channels_last)

    def card_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"steps": None}, {"solver": "dpmpp_2m", "steps": 20, "spacing": "logsnr"}


if __name__ == "__main__":
    raise SystemExit("decoding.train.distill_guided is a training task: run `decoding train distill-guided --help`")
