"""Inference-time control of image diffusion: tree search (DTS / DTS*) and steering (Steered Diffusion, DPS, replacement).

- :class:`DTS` (Jain et al., arXiv 2506.20701): samples of ``p(x) exp(lam r(x))`` from a search
  tree over the denoising chain that persists between calls; baselines :func:`best_of_n` and
  :func:`smc_sample` (twisted SMC).
- :class:`Steer` (Nair et al., arXiv 2310.00224): a model wrapper that steers the x0 estimate by
  the gradient of a task loss (:class:`Inpaint`, :class:`SuperResolution`, :class:`Deblur`,
  :class:`ClassifierLoss`); baselines :class:`DPS` (arXiv 2209.14687) and :class:`Replace`.

Everything runs through :func:`decoding.decode`; ``decoding.generate(model, guidance=[...])``
accepts these objects.
"""

from decoding.control.best_of_n import best_of_n
from decoding.control.dps import DPS, DPSModel
from decoding.control.dts import DTS
from decoding.control.operators import ClassifierLoss, Deblur, Inpaint, SuperResolution, box_mask, random_mask
from decoding.control.replace import Replace, ReplaceModel
from decoding.control.rewards import ClassifierReward
from decoding.control.smc import TwistedSMC, smc_sample
from decoding.control.steer import Steer, SteeredModel
from decoding.control.tree import DiffusionTree

__all__ = [
    "DPS",
    "DTS",
    "ClassifierLoss",
    "ClassifierReward",
    "DPSModel",
    "Deblur",
    "DiffusionTree",
    "Inpaint",
    "Replace",
    "ReplaceModel",
    "Steer",
    "SteeredModel",
    "SuperResolution",
    "TwistedSMC",
    "best_of_n",
    "box_mask",
    "random_mask",
    "smc_sample",
]
