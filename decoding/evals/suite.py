"""Eval suites as TOML files: parsing, validation and the expansion of sweeps into configs.

A suite is a list of tasks. A task names a model, a decoder and metrics (looked up at the edge,
in :mod:`decoding.evals.tasks`), the number of samples and the decoder settings. ``sweep``
gives lists of values whose cartesian product (times the optional explicit ``configs``) makes
the configs of a task; every config draws ``samples`` samples in chunks of ``batch``.

Example::

    name = "quick"
    seed = 0

    [[task]]
    name = "markov"
    kind = "text"
    model = "markov"
    decoder = "autoregressive"
    samples = 256
    batch = 64
    metrics = ["kl_exact", "distinct_n"]
    model_args = { vocab = 4, seed = 1 }
    settings = { max_new_tokens = 4 }
    sweep = { temperature = [0.7, 1.0] }
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    try:
        import tomli as tomllib
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("reading eval suites on Python 3.10 needs `pip install tomli`") from e

SUITE_KEYS = {"name", "description", "seed", "defaults", "task"}
TASK_KEYS = {
    "name",
    "kind",
    "description",
    "model",
    "model_args",
    "decoder",
    "settings",
    "sweep",
    "configs",
    "samples",
    "batch",
    "metrics",
    "metric_args",
    "prompts",
    "data",
    "plots",
}
PLOT_KEYS = {"x", "y", "series", "logx", "logy", "title"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Plot:
    """One plot of a task's report: metric ``y`` against ``x`` (``nfe``, ``seconds`` or a setting)."""

    x: str
    y: str
    series: str | None = None
    logx: bool = False
    logy: bool = False
    title: str | None = None


@dataclass(frozen=True)
class Config:
    """One point of a task's sweep: the full decoder settings and a short label of what varies."""

    index: int
    settings: dict[str, Any]
    label: str


@dataclass(frozen=True)
class TaskSpec:
    """One task of a suite, as written in the TOML file (names not yet resolved)."""

    name: str
    kind: str
    model: str
    decoder: str
    samples: int
    batch: int
    metrics: tuple[str, ...]
    model_args: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    configs: tuple[dict[str, Any], ...] = ()
    metric_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompts: tuple[Any, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    plots: tuple[Plot, ...] = ()
    description: str = ""

    def expand(self) -> list[Config]:
        """The configs: ``settings`` overlaid by each explicit config, then each sweep point."""
        explicit = list(self.configs) or [{}]
        keys = list(self.sweep)
        points = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*self.sweep.values())]
        out: list[Config] = []
        for cfg in explicit:
            for point in points:
                out.append({**self.settings, **cfg, **point})
        varying = [
            k for k in _ordered_keys(out) if len({json.dumps(o.get(k), sort_keys=True) for o in out}) > 1
        ]
        return [
            Config(i, s, ",".join(f"{k}={_short(s.get(k))}" for k in varying if k in s) or "default")
            for i, s in enumerate(out)
        ]


@dataclass(frozen=True)
class Suite:
    """A parsed suite file."""

    name: str
    seed: int
    tasks: tuple[TaskSpec, ...]
    description: str = ""
    path: Path | None = None


def _short(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def _ordered_keys(dicts: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(d))
    return list(seen)


def _unknown(where: str, got: set[str], allowed: set[str]) -> None:
    bad = sorted(got - allowed)
    if bad:
        raise ValueError(f"{where}: unknown key(s) {bad}; allowed keys are {sorted(allowed)}")


def _need(where: str, table: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    if key not in table:
        raise ValueError(f"{where}: missing required key {key!r}")
    v = table[key]
    if not isinstance(v, typ) or isinstance(v, bool) and typ is int:
        raise ValueError(f"{where}: {key!r} must be {_typename(typ)}, got {v!r}")
    return v


def _typename(typ: type | tuple[type, ...]) -> str:
    types = typ if isinstance(typ, tuple) else (typ,)
    return " or ".join(
        {"str": "a string", "int": "an integer", "dict": "a table", "list": "an array"}.get(
            t.__name__, t.__name__
        )
        for t in types
    )


def _table(where: str, raw: dict[str, Any], key: str) -> dict[str, Any]:
    v = raw.get(key, {})
    if not isinstance(v, dict):
        raise ValueError(f"{where}: {key!r} must be a table, got {v!r}")
    return dict(v)


def _parse_task(raw: Any, i: int, defaults: dict[str, Any]) -> TaskSpec:
    if not isinstance(raw, dict):
        raise ValueError(f"task #{i + 1} must be a table ([[task]])")
    raw = {**defaults, **raw}
    where = f"task #{i + 1}" + (f" ({raw['name']!r})" if isinstance(raw.get("name"), str) else "")
    _unknown(where, set(raw), TASK_KEYS)
    name = _need(where, raw, "name", str)
    if not _NAME.match(name):
        raise ValueError(f"{where}: name {name!r} may hold only letters, digits, '_', '-' and '.'")
    samples = _need(where, raw, "samples", int)
    batch = raw.get("batch", min(samples, 16))
    if samples < 1:
        raise ValueError(f"{where}: samples must be >= 1, got {samples}")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"{where}: batch must be an integer >= 1, got {batch!r}")
    metrics = raw.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ValueError(f"{where}: metrics must be an array of metric names, got {metrics!r}")
    sweep = _table(where, raw, "sweep")
    for k, v in sweep.items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"{where}: sweep.{k} must be a non-empty array of values, got {v!r}")
    configs = raw.get("configs", [])
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise ValueError(f"{where}: configs must be an array of tables ([[task.configs]]), got {configs!r}")
    metric_args = _table(where, raw, "metric_args")
    for m, a in metric_args.items():
        if m not in metrics:
            raise ValueError(f"{where}: metric_args.{m} is given but {m!r} is not in metrics {metrics}")
        if not isinstance(a, dict):
            raise ValueError(f"{where}: metric_args.{m} must be a table, got {a!r}")
    prompts = raw.get("prompts", [])
    if not isinstance(prompts, list):
        raise ValueError(f"{where}: prompts must be an array, got {prompts!r}")
    plots = raw.get("plots", [])
    if not isinstance(plots, list) or not all(isinstance(p, dict) for p in plots):
        raise ValueError(f"{where}: plots must be an array of tables ([[task.plots]])")
    parsed_plots = []
    for p in plots:
        _unknown(f"{where}: plot", set(p), PLOT_KEYS)
        for k, kind in (("logx", bool), ("logy", bool), ("series", str), ("title", str)):
            if k in p and not isinstance(p[k], kind):
                raise ValueError(f"{where}: plot {k} must be {'true or false' if kind is bool else 'a string'}, got {p[k]!r}")
        parsed_plots.append(
            Plot(
                **{
                    "x": _need(f"{where}: plot", p, "x", str),
                    "y": _need(f"{where}: plot", p, "y", str),
                    **{k: p[k] for k in p if k not in ("x", "y")},
                }
            )
        )
    return TaskSpec(
        name=name,
        kind=raw.get("kind", "text"),
        model=_need(where, raw, "model", str),
        decoder=_need(where, raw, "decoder", str),
        samples=samples,
        batch=batch,
        metrics=tuple(metrics),
        model_args=_table(where, raw, "model_args"),
        settings=_table(where, raw, "settings"),
        sweep=sweep,
        configs=tuple(configs),
        metric_args=metric_args,
        prompts=tuple(prompts),
        data=_table(where, raw, "data"),
        plots=tuple(parsed_plots),
        description=str(raw.get("description", "")),
    )


def parse_suite(text: str, source: str = "<suite>", name: str = "suite") -> Suite:
    """Parse and validate suite TOML ``text``; ``source`` names it in error messages.

    Raises:
        ValueError: malformed TOML (the message holds the line and column) or a bad suite.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: malformed TOML: {e}") from None
    try:
        _unknown("suite", set(raw), SUITE_KEYS)
        defaults = _table("suite", raw, "defaults")
        tasks_raw = raw.get("task", [])
        if not isinstance(tasks_raw, list) or not tasks_raw:
            raise ValueError("suite has no tasks; add at least one [[task]] table")
        tasks = tuple(_parse_task(t, i, defaults) for i, t in enumerate(tasks_raw))
        names = [t.name for t in tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"task names must be unique; repeated: {dup}")
        seed = raw.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        return Suite(
            name=str(raw.get("name", name)),
            seed=seed,
            tasks=tasks,
            description=str(raw.get("description", "")),
        )
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def load_suite(path: str | Path) -> Suite:
    """Read and validate the suite file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"suite file {path} not found (suites live in evals/, e.g. evals/quick.toml)")
    suite = parse_suite(path.read_text(encoding="utf-8"), source=str(path), name=path.stem)
    return Suite(suite.name, suite.seed, suite.tasks, suite.description, path)


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (stable across runs, machines and Python versions)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


def fingerprint(obj: Any, n: int = 10) -> str:
    """A short hex digest of a JSON-able object (used to name result folders of a config)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]
