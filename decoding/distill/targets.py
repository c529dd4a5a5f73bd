"""The targets of guided distillation (Meng et al., arXiv 2210.03142), for per-row noise levels and weights.

**Guidance weight.** Meng et al. write the guided prediction as ``(1 + w) c - w u`` (``c``: the
conditional prediction, ``u``: the unconditional one), so ``w = 0`` is the conditional model. The
engine's :class:`~decoding.wrappers.guidance.CFG` writes ``u + s (c - u)``, so ``s = 1`` is the
conditional model. They are one family: ``s = 1 + w`` (:func:`cfg_scale`, :func:`meng_weight`).
Students are conditioned on Meng's ``w``; the user-facing option stays the CFG scale.

**Stage 1** (sec. 3.1): the student ``v(z_t, t, w)`` learns the teacher's guided prediction
(:class:`CFGTeacher`). The guided combination is linear in the network output, so it is the same in
v, x0 and eps: ``x0 = alpha z - sigma v`` and ``eps = sigma z + alpha v`` are affine in ``v`` with
the same ``z``.

**Stage 2** (sec. 3.2, progressive distillation of Salimans & Ho, arXiv 2202.00512, alg. 2): one
student DDIM step from ``s`` to ``t`` must land where two teacher DDIM steps ``s -> m -> t`` land
(:func:`two_step_target`). A DDIM step with data prediction ``x`` is
``z_t = alpha_t x + sigma_t (z_s - alpha_s x) / sigma_s``, so the ``x`` that reaches a given ``z_t``
is ``(z_t - r z_s) / (alpha_t - r alpha_s)`` with ``r = sigma_t / sigma_s`` (:func:`step_target`).

Every coefficient is a ``(B,)`` tensor (one noise level per row) or a number; images are
``(B, C, H, W)`` (any ``(B, ...)`` works). Network callables take ``(z, lam, labels, w)`` with
``lam = log(alpha / sigma)`` ``(B,)``, labels ``(B,)`` long and weights ``(B,)``, and return ``v``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from decoding.solvers.parameterization import bcast

#: ``teacher(z, lam, labels, w) -> v``: a guided prediction for per-row weights.
GuidedNet = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def cfg_scale(w: float) -> float:
    """The engine's CFG scale ``s = 1 + w`` of Meng et al.'s weight ``w``."""
    return 1.0 + float(w)


def meng_weight(scale: float) -> float:
    """Meng et al.'s weight ``w = s - 1`` of the engine's CFG scale ``s``."""
    return float(scale) - 1.0


class CFGTeacher:
    """The classifier-free-guided prediction ``(1 + w) v_c - w v_u`` of a class-conditional network, one weight per row.

    The conditional and unconditional rows go through ONE call of ``net`` (``2B`` rows), as
    :class:`~decoding.wrappers.guidance.GuidedModel` does for one weight per batch; this class is
    that combination with a ``(B,)`` tensor of weights (tests check the two agree).

    Args:
        net: ``net(x, lam, labels) -> v`` (a :class:`~decoding.nn.unet.UNet` predicting v).
        null_label: the unconditional label.
    """

    def __init__(self, net: Callable[[Tensor, Tensor, Tensor], Tensor], null_label: int) -> None:
        self.net, self.null_label = net, int(null_label)

    def __call__(self, z: Tensor, lam: Tensor, labels: Tensor, w: Tensor) -> Tensor:
        """``(B, C, H, W)`` guided v in ``z``'s dtype."""
        b = z.shape[0]
        both = torch.cat([labels, torch.full_like(labels, self.null_label)])
        out = self.net(torch.cat([z, z]), torch.cat([lam, lam]), both).to(z.dtype)
        v_c, v_u = out[:b], out[b:]
        return v_c + bcast(w, v_c) * (v_c - v_u)


def ddim_v(z: Tensor, v: Tensor, alpha_s: Tensor | float, sigma_s: Tensor | float, alpha_t: Tensor | float,
           sigma_t: Tensor | float) -> Tensor:
    """One deterministic DDIM step (arXiv 2010.02502) from ``s`` to ``t`` with a v-prediction at ``s``."""
    a_s, s_s, a_t, s_t = (bcast(c, z) for c in (alpha_s, sigma_s, alpha_t, sigma_t))
    x0 = a_s * z - s_s * v
    eps = s_s * z + a_s * v
    return a_t * x0 + s_t * eps


def step_target(z_s: Tensor, alpha_s: Tensor | float, sigma_s: Tensor | float, z_t: Tensor, alpha_t: Tensor | float,
                sigma_t: Tensor | float) -> Tensor:
    """The data prediction ``x`` whose DDIM step from ``(z_s, s)`` lands on ``z_t``: ``(z_t - r z_s) / (alpha_t - r alpha_s)``."""
    a_s, s_s, a_t, s_t = (bcast(c, z_s) for c in (alpha_s, sigma_s, alpha_t, sigma_t))
    r = s_t / s_s
    return (z_t - r * z_s) / (a_t - r * a_s)


def x0_to_v(z: Tensor, x0: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor:
    """``v = (alpha z - x0) / sigma``: the v-prediction with data prediction ``x0`` at ``z`` (``sigma > 0``)."""
    return (bcast(alpha, z) * z - x0) / bcast(sigma, z)


def two_step_target(
    teacher: GuidedNet, z: Tensor, labels: Tensor, w: Tensor, lam: tuple[Tensor, Tensor],
    alpha: tuple[Tensor, Tensor, Tensor], sigma: tuple[Tensor, Tensor, Tensor],
) -> Tensor:
    """The student's v-target at ``(z, s)``: its DDIM step to ``t`` reproduces two teacher DDIM steps ``s -> m -> t``.

    Args:
        teacher: ``teacher(z, lam, labels, w) -> v``.
        z: ``(B, ...)`` noisy images at ``s``.
        lam: ``(lam_s, lam_m)`` ``(B,)``, where the teacher is called (``t`` may be clean data).
        alpha, sigma: ``(s, m, t)`` coefficients, ``(B,)`` each; ``sigma_t = 0`` ends at the data.

    Returns:
        ``(B, ...)`` target v at ``s`` (``(alpha_s z - x~) / sigma_s``, ``x~`` from :func:`step_target`).
    """
    (a_s, a_m, a_t), (s_s, s_m, s_t) = alpha, sigma
    z_m = ddim_v(z, teacher(z, lam[0], labels, w).to(z.dtype), a_s, s_s, a_m, s_m)
    z_t = ddim_v(z_m, teacher(z_m, lam[1], labels, w).to(z.dtype), a_m, s_m, a_t, s_t)
    return x0_to_v(z, step_target(z, a_s, s_s, z_t, a_t, s_t), a_s, s_s)
