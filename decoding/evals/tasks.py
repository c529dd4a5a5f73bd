"""The edge where suite names become objects: models, decoders and metrics of every task kind.

The core has no registry (import the function); names live only here, for the eval suites.
:func:`check_names` resolves every name of a suite and :func:`build` constructs every job and
metric, both before any sample is drawn, so a typo fails at once with the list of valid names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from decoding.evals import metrics_image, metrics_text, tasks_grammar, tasks_image, tasks_masked, tasks_text
from decoding.evals.base import Job, Metric
from decoding.evals.suite import Config, Suite, TaskSpec, fingerprint

#: kind -> module with MODELS, DECODERS (name -> constructor) and make_job(...).
KINDS: dict[str, ModuleType] = {"text": tasks_text, "image": tasks_image, "classify": tasks_image}


def _metrics() -> dict[str, Callable[..., Metric]]:
    return {**metrics_text.METRICS, **metrics_image.METRICS}


def _models(kind: str) -> dict[str, Any]:
    mod = KINDS[kind]
    return mod.CLASSIFY_MODELS if kind == "classify" else mod.MODELS


def _decoders(kind: str) -> dict[str, Any]:
    if kind == "text":
        return {**tasks_text.DECODERS, **tasks_grammar.DECODERS, **tasks_masked.DECODERS}
    mod = KINDS[kind]
    return mod.CLASSIFY_DECODERS if kind == "classify" else mod.DECODERS


def available() -> dict[str, dict[str, list[str]]]:
    """Every name a suite may use: ``{kind: {"models": [...], "decoders": [...]}}`` and ``metrics``."""
    out: dict[str, Any] = {k: {"models": sorted(_models(k)), "decoders": sorted(_decoders(k))} for k in KINDS}
    out["metrics"] = {"all": sorted(_metrics())}
    return out


def _unknown(what: str, name: str, task: str, names: Any) -> ValueError:
    return ValueError(
        f"task {task!r}: unknown {what} {name!r}; available: {', '.join(sorted(names)) or 'none'}"
    )


def check_names(suite: Suite) -> None:
    """Raise ``ValueError`` for the first unknown kind, model, decoder or metric of ``suite``."""
    metrics = _metrics()
    for t in suite.tasks:
        if t.kind not in KINDS:
            raise _unknown("kind", t.kind, t.name, KINDS)
        if t.model not in _models(t.kind):
            raise _unknown(f"{t.kind} model", t.model, t.name, _models(t.kind))
        if t.decoder not in _decoders(t.kind):
            raise _unknown(f"{t.kind} decoder", t.decoder, t.name, _decoders(t.kind))
        for m in t.metrics:
            if m not in metrics:
                raise _unknown("metric", m, t.name, metrics)


@dataclass
class BuiltConfig:
    """One config of a task with its job and the id that names its stored results."""

    config: Config
    config_id: str
    job: Job


@dataclass
class BuiltTask:
    spec: TaskSpec
    configs: list[BuiltConfig]
    metrics: list[Metric]


def config_id(suite: Suite, spec: TaskSpec, config: Config) -> str:
    """Digest of everything that decides a config's samples (so a changed suite never mixes results)."""
    return fingerprint(
        {
            "seed": suite.seed,
            "kind": spec.kind,
            "model": spec.model,
            "model_args": spec.model_args,
            "decoder": spec.decoder,
            "settings": config.settings,
            "batch": spec.batch,
            "prompts": spec.prompts,
            "data": spec.data,
            "metrics": spec.metrics,
            "metric_args": spec.metric_args,
        }
    )


def build(suite: Suite, device: torch.device) -> list[BuiltTask]:
    """Construct every model, job and metric of ``suite`` (models shared by equal name and args)."""
    check_names(suite)
    suite_dir = suite.path.parent if suite.path is not None else None
    models: dict[str, Any] = {}
    metric_ctors = _metrics()
    out = []
    for spec in suite.tasks:
        try:
            key = json.dumps([spec.kind, spec.model, spec.model_args], sort_keys=True)
            if key not in models:
                models[key] = _models(spec.kind)[spec.model](dict(spec.model_args), device)
            metrics = [
                metric_ctors[m](dict(spec.metric_args.get(m, {})), spec, suite_dir) for m in spec.metrics
            ]
            configs = []
            for cfg in spec.expand():
                decoder = _decoders(spec.kind)[spec.decoder](dict(cfg.settings), spec, suite_dir)
                job = KINDS[spec.kind].make_job(spec, models[key], decoder, suite_dir)
                for m in metrics:
                    m.check(job)
                configs.append(BuiltConfig(cfg, config_id(suite, spec, cfg), job))
        except (ValueError, FileNotFoundError) as e:
            where = f"task {spec.name!r}"
            msg = str(e) if str(e).startswith(where) else f"{where}: {e}"
            raise type(e)(msg) from None
        out.append(BuiltTask(spec, configs, metrics))
    return out


def describe() -> str:
    """A human-readable list of the available names (for ``decoding eval --list``)."""
    av = available()
    lines = []
    for kind in KINDS:
        lines.append(
            f"kind {kind}: models: {', '.join(av[kind]['models']) or '-'}; decoders: {', '.join(av[kind]['decoders']) or '-'}"
        )
    lines.append(f"metrics: {', '.join(av['metrics']['all'])}")
    return "\n".join(lines)
