"""Typed options of :func:`decoding.generate`: the :class:`Sampling` record and which option applies to which kind.

Every option of ``generate`` defaults to ``None`` ("not given"); a given option that does not apply
to the model's kind is an :class:`OptionError` naming the option and the kind, never ignored.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from decoding.core.protocols import Processor
from decoding.processors.chain import standard_processors
from decoding.processors.temperature import MIN_TEMPERATURE


class OptionError(ValueError):
    """An option that does not apply to the model's kind, or a value out of range."""


@dataclass(frozen=True)
class Sampling:
    """How the next token (or each unmasked position) is drawn from the model's logits.

    Applied in the order of :mod:`decoding.processors.chain` (repetition penalty, temperature,
    top-k, top-p, min-p, typical). ``None`` leaves a processor out.

    Attributes:
        temperature: > 0; divides the logits.
        top_k: keep the ``k`` most likely tokens (>= 1; 0 = off).
        top_p: nucleus mass in (0, 1].
        min_p: keep tokens with ``p >= min_p * p_max``, in [0, 1].
        typical: locally typical sampling mass in (0, 1) (arXiv 2202.00666).
        repetition_penalty: > 0; above 1 discourages tokens already in the sequence (CTRL, arXiv 1909.05858).
        greedy: take the argmax (processors still apply; temperature then has no effect).
    """

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical: float | None = None
    repetition_penalty: float | None = None
    greedy: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> OptionError:
            return OptionError(f"sampling.{name} {why}, got {getattr(self, name)!r}")

        if self.temperature is not None and not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise bad("temperature", "must be > 0 (use greedy=True for argmax decoding)")
        if self.temperature is not None and self.temperature < MIN_TEMPERATURE:
            raise bad("temperature", f"must be a finite number >= {MIN_TEMPERATURE:g} (below it logits / T overflow "
                                     "to inf; use greedy=True for argmax decoding)")
        if self.top_k is not None and (int(self.top_k) != self.top_k or self.top_k < 0):
            raise bad("top_k", "must be a whole number >= 0 (0 = off)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise bad("top_p", "must lie in (0, 1]")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise bad("min_p", "must lie in [0, 1]")
        if self.typical is not None and not 0 < self.typical < 1:
            raise bad("typical", "(the typical mass) must lie in (0, 1)")
        if self.repetition_penalty is not None and not self.repetition_penalty > 0:
            raise bad("repetition_penalty", "must be > 0 (1 = off)")

    def given(self) -> list[str]:
        """Names of the fields set away from their defaults."""
        return [f.name for f in fields(self) if getattr(self, f.name) not in (None, False)]

    def processors(self) -> list[Processor]:
        """The processor chain these settings describe (empty when none is set)."""
        return standard_processors(
            temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
            typical=self.typical, repetition_penalty=self.repetition_penalty,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}

    @classmethod
    def coerce(cls, value: Sampling | Mapping[str, Any] | None) -> Sampling:
        """A :class:`Sampling` from itself, a dict of its fields, or None (all defaults)."""
        if value is None:
            return cls()
        if isinstance(value, Sampling):
            return value
        if isinstance(value, Mapping):
            names = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - names)
            if unknown:
                raise OptionError(f"unknown sampling field(s) {unknown}; choose from {sorted(names)}")
            return cls(**dict(value))
        raise OptionError(f"sampling must be a decoding.Sampling or a dict, got {type(value).__name__}")


#: Options every kind takes (besides the prompt).
COMMON = frozenset({"n", "seed", "on_step", "progress", "sync_every", "batch_size"})

#: The options of each kind (on top of :data:`COMMON`) and the Sampling fields it honours.
KIND_OPTIONS: dict[str, frozenset[str]] = {
    "causal-lm": frozenset({
        "max_new_tokens", "sampling", "stop", "chat", "grammar", "json_schema", "aligned", "trie",
        "budget_close",
    }),
    "masked-diffusion": frozenset({"steps", "sampling", "sampler", "noise", "cache", "length", "blank_tokens"}),
    "any-subset": frozenset({"sampling", "speculative", "adaptive", "order", "blank_tokens"}),
    "image-diffusion": frozenset({"steps", "class_label", "solver", "spacing", "guidance", "solver_options"}),
    "distilled-diffusion": frozenset({"steps", "class_label", "guidance", "sampler", "solver", "spacing"}),
    "image-ar": frozenset({"class_label", "guidance", "sampling", "sampler"}),
    "image-ar-dd": frozenset({"class_label", "steps"}),
}
KIND_SAMPLING: dict[str, frozenset[str]] = {
    "causal-lm": frozenset({"temperature", "top_k", "top_p", "min_p", "typical", "repetition_penalty", "greedy"}),
    # ASSD and RADD are exact for any map applied to every conditional alike; tested with temperature
    "masked-diffusion": frozenset({"temperature"}),
    "any-subset": frozenset({"temperature"}),
    "image-diffusion": frozenset(),
    "distilled-diffusion": frozenset(),
    "image-ar": frozenset({"temperature", "top_k", "top_p", "min_p"}),
    "image-ar-dd": frozenset(),
}


def check_options(kind: str, model_name: str, given: Mapping[str, Any]) -> None:
    """Raise :class:`OptionError` for each option in ``given`` (not None) that ``kind`` does not take.

    Sampling settings are checked field by field (``sampling.top_p does not apply to ...``).
    """
    sampling = given.get("sampling")
    if sampling is not None:
        ok = KIND_SAMPLING.get(kind, frozenset())
        for name in Sampling.coerce(sampling).given():
            if name not in ok:
                raise OptionError(
                    f"sampling.{name} does not apply to {kind} models like {model_name}"
                    + (f"; they take {', '.join(sorted(ok))}" if ok else "; they take no sampling settings")
                )
    allowed = COMMON | KIND_OPTIONS.get(kind, frozenset())
    for name, value in given.items():
        if value is None or name in allowed or name == "sampling":
            continue
        takers = sorted(k for k, opts in KIND_OPTIONS.items() if name in opts)
        where = f" (it is for {', '.join(takers)} models)" if takers else ""
        raise OptionError(
            f"option {name!r} does not apply to {kind} models like {model_name}{where}; "
            f"options for {kind}: {', '.join(sorted(allowed))}"
        )


def whole(name: str, value: Any) -> int:
    """``value`` as an int, or an :class:`OptionError` naming ``name`` (``2.5``, ``True``, ``"3"`` and NaN are not whole numbers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool, or an :class:`OptionError` naming ``name`` (``"no"`` is not ``False``)."""
    if not isinstance(value, bool):
        raise OptionError(f"{name} must be True or False, got {value!r}")
    return value


def template(model_name: str, prompt: Any) -> str | None:
    """The infill template of a masked or any-subset model: one string (or None), else an :class:`OptionError`."""
    if prompt is not None and not isinstance(prompt, str):
        raise OptionError(f"{model_name} takes one infill template (a str) per call, got {type(prompt).__name__}; "
                          "call generate once per template")
    return prompt
