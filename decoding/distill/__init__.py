"""Distillation of a classifier-free-guided diffusion model into a few-step student (Meng et al., arXiv 2210.03142).

- :mod:`decoding.distill.targets`: the guidance-weight convention, the CFG teacher for per-row
  weights, DDIM steps with per-row coefficients and the progressive-distillation target.
- :mod:`decoding.distill.sampler`: the paper's stochastic N-step sampler (the deterministic one is DDIM).
- :mod:`decoding.distill.student`: a w-conditioned student as an engine model of the decode loop.
- :mod:`decoding.distill.card`: the README of a shipped student.

Training: ``decoding train distill-guided`` (stage 1) and ``decoding train distill-progressive``
(stage 2, one run per halving); sampling: ``decoding.load`` / ``decoding.generate`` (kind
``distilled-diffusion``).
"""

from decoding.distill.sampler import StochasticStepSampler
from decoding.distill.targets import cfg_scale, meng_weight

__all__ = ["StochasticStepSampler", "cfg_scale", "meng_weight"]
