"""Non-autoregressive text decoders for eval tasks: RADD (absorbing diffusion, with or without its
exact cache) and any-subset speculative decoding (ASSD).

On the closed-form Markov model both get the *exact* conditionals of the chain's joint over a
fixed length (:class:`decoding.processes.masked_joint.JointConditionals`), so ``kl_exact``
measures each sampler's own error: RADD's error from few steps, and none for ASSD (exact by
construction) or for RADD's cache (identical samples, fewer NFE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.core.loop import decode
from decoding.evals.base import take_args
from decoding.evals.markov import joint_table
from decoding.evals.suite import TaskSpec
from decoding.evals.tasks_text import EvalLM, TextDecoder
from decoding.nn.any_subset import AnySubsetModel, AnySubsetQuery


def _joint_conditionals(lm: EvalLM, prompts: list[list[int]], length: int, who: str) -> Any:
    """The exact masked-position conditionals of ``lm``'s Markov chain over ``length`` tokens."""
    from decoding.processes.masked_joint import JointConditionals

    if lm.markov is None:
        raise ValueError(f"decoder {who} runs on the closed-form model here: use model = 'markov'")
    if lm.eos_token_id is not None:
        raise ValueError(
            f"decoder {who} samples fixed-length sequences: use a Markov model without EOS (model_args.eos = '')"
        )
    starts = {p[-1] for p in prompts}
    if len(starts) != 1:
        raise ValueError(f"decoder {who} needs one prompt (the Markov start token)")
    cache = lm.info.setdefault("joint_conditionals", {})
    key = (starts.pop(), length)
    if key not in cache:
        cache[key] = JointConditionals(joint_table(lm.markov, key[0], length))
    return cache[key]


def _length(s: dict[str, Any], who: str) -> int:
    n = s["max_new_tokens"]
    if not isinstance(n, int) or n < 1:
        raise ValueError(
            f"decoder {who}: settings.max_new_tokens (the sequence length) must be an integer >= 1, got {n!r}"
        )
    return n


def radd_decoder(
    settings: dict[str, Any], spec: TaskSpec | None = None, suite_dir: Path | None = None
) -> TextDecoder:
    """RADD sampling (Ou et al., arXiv 2406.03736) of ``max_new_tokens`` positions from all-mask.

    Settings: ``max_new_tokens`` (the length), ``steps``, ``sampler`` (``tweedie``, ``euler``,
    ``exact_rate``, ``any_order``), ``noise`` (``loglinear``, ``cosine``, ``poly:K``), ``cache``
    (reuse predictions of unchanged rows, :class:`decoding.wrappers.cache.CachedModel`).
    """
    from decoding.processes.masked import SAMPLERS, Masked
    from decoding.wrappers.cache import CachedModel

    s = take_args(
        "decoder radd",
        settings,
        {"max_new_tokens": None, "steps": None, "sampler": "tweedie", "noise": "loglinear", "cache": False},
    )
    length = _length(s, "radd")
    steps = s["steps"]
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"decoder radd: settings.steps must be an integer >= 1, got {steps!r}")
    if s["sampler"] not in SAMPLERS:
        raise ValueError(
            f"decoder radd: unknown sampler {s['sampler']!r}; choose one of {', '.join(SAMPLERS)}"
        )
    Masked(mask_id=0, length=length, sampler=s["sampler"], noise=s["noise"])  # checks the noise name now

    def generate(
        lm: EvalLM, prompts: list[list[int]], generator: torch.Generator
    ) -> tuple[list[list[int]], list[float]]:
        model = _joint_conditionals(lm, prompts, length, "radd")
        if s["cache"]:
            model = CachedModel(model)
        process = Masked(mask_id=lm.vocab_size, length=length, sampler=s["sampler"], noise=s["noise"])
        res = decode(model, process, len(prompts), steps=steps, generator=generator)
        return res.x.tolist(), res.nfe.tolist()

    return TextDecoder("radd", length, generate, [])


class JointAnySubset(AnySubsetModel):
    """Exact any-subset answers ``log p(x_pos | contents of rank < query_rank)`` of a known joint.

    Built on :class:`~decoding.processes.masked_joint.JointConditionals`: each query becomes a
    partly masked sequence (unknown positions masked) whose exact conditional is read at the
    queried position.
    """

    def __init__(self, conditionals: Any) -> None:
        self.jc = conditionals
        self.vocab_size = conditionals.vocab_size

    def any_subset_logits(self, query: AnySubsetQuery) -> Tensor:
        b, q = query.query_pos.shape
        known = query.rank[:, None, :] < query.query_rank[:, :, None]  # (B, Q, L)
        x = torch.where(
            known, query.tokens[:, None, :], torch.full_like(known, self.jc.mask_id, dtype=torch.long)
        )
        cond = self.jc.conditionals(x.reshape(b * q, -1)).reshape(b, q, -1, self.vocab_size)
        at = cond.gather(2, query.query_pos[:, :, None, None].expand(b, q, 1, self.vocab_size))[:, :, 0]
        return at.clamp_min(1e-300).log().float()


def assd_decoder(
    settings: dict[str, Any], spec: TaskSpec | None = None, suite_dir: Path | None = None
) -> TextDecoder:
    """Any-subset speculative decoding (Guo & Ermon, arXiv 2504.20456) of ``max_new_tokens`` positions.

    Settings: ``max_new_tokens`` (the length), ``k`` (most tokens per model call), ``adaptive``,
    ``k_max``, ``order`` (``left_to_right`` or ``random``).
    """
    from decoding.processes.assd import ASSD

    s = take_args(
        "decoder assd",
        settings,
        {"max_new_tokens": None, "k": 4, "adaptive": False, "k_max": None, "order": "left_to_right"},
    )
    length = _length(s, "assd")
    ASSD(
        k=s["k"], adaptive=bool(s["adaptive"]), k_max=s["k_max"], order=s["order"]
    )  # checks the settings now

    def generate(
        lm: EvalLM, prompts: list[list[int]], generator: torch.Generator
    ) -> tuple[list[list[int]], list[float]]:
        model = JointAnySubset(_joint_conditionals(lm, prompts, length, "assd"))
        process = ASSD(k=s["k"], adaptive=bool(s["adaptive"]), k_max=s["k_max"], order=s["order"])
        b = len(prompts)
        prompt = {
            "input_ids": torch.zeros(b, length, dtype=torch.long, device=lm.device),
            "targets": torch.ones(b, length, dtype=torch.bool, device=lm.device),
        }
        res = decode(model, process, prompt, steps=length, generator=generator)
        return res.x.tolist(), res.nfe.tolist()

    return TextDecoder("assd", length, generate, [])


DECODERS = {"radd": radd_decoder, "assd": assd_decoder}
