"""Checking finished text against a lark grammar (the validity metric and exact conditional targets).

The grammar comes from a task's ``data`` table or a metric's arguments: ``grammar`` (a path to a
``.lark`` file, looked up as given, next to the suite, then in the project root; or the name of a
shipped grammar in ``grammars/``) or
``grammar_text`` (the grammar inline), with ``start`` (default ``"start"``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any


def find_file(name: str, suite_dir: Path | None) -> Path:
    """``name`` as given, else relative to the suite's folder, else to the project root."""
    p = Path(name)
    candidates = [p]
    if not p.is_absolute():
        if suite_dir is not None:
            candidates += [suite_dir / p, suite_dir.parent / p]
        candidates.append(Path(__file__).resolve().parents[2] / p)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"file {name!r} not found (looked in: {', '.join(str(c) for c in candidates)})")


def grammar_path(name: str, suite_dir: Path | None) -> Path:
    """A ``.lark`` file: ``name`` as a path (see :func:`find_file`) or a shipped grammar's name (``"json"``)."""
    if Path(name).suffix or "/" in name:
        return find_file(name, suite_dir)
    return find_file(f"grammars/{name}.lark", suite_dir)


class GrammarChecker:
    """``checker(text) -> bool``: does the whole ``text`` parse under the grammar?"""

    def __init__(self, text: str, start: str = "start", source: str = "<grammar>") -> None:
        import lark

        try:
            self.parser = lark.Lark(text, start=start, parser="earley")
        except lark.exceptions.LarkError as e:
            raise ValueError(f"grammar {source} does not compile: {e}") from None
        self.source = source
        self._lark = lark

    @lru_cache(maxsize=65536)  # noqa: B019 - checkers live as long as a run and texts repeat
    def __call__(self, text: str) -> bool:
        try:
            self.parser.parse(text)
        except self._lark.exceptions.LarkError:
            return False
        return True


def grammar_from(
    args: dict[str, Any], data: dict[str, Any], suite_dir: Path | None, who: str
) -> GrammarChecker:
    """The grammar named by ``args`` (metric arguments) or else by the task's ``data`` table."""
    src = args if ("grammar" in args or "grammar_text" in args) else data
    start = str(args.get("start", src.get("start", "start")))
    if "grammar_text" in src:
        return GrammarChecker(str(src["grammar_text"]), start, f"(inline, {who})")
    if "grammar" in src:
        path = grammar_path(str(src["grammar"]), suite_dir)
        return GrammarChecker(path.read_text(encoding="utf-8"), start, str(path))
    raise ValueError(
        f"{who} needs a grammar: set data.grammar = 'grammars/x.lark' (or data.grammar_text) in the task, "
        f"or grammar / grammar_text in metric_args"
    )
