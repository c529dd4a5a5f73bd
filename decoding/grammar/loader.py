"""Find a grammar: a built-in name (``json``), a path to a ``.lark`` file, or lark source text."""

from __future__ import annotations

from pathlib import Path

GRAMMARS_DIR = Path(__file__).resolve().parents[2] / "grammars"


class GrammarError(ValueError):
    """A grammar that cannot be used: malformed, not LALR(1), unsupported terminal, or never completable."""


def builtin_grammars() -> list[str]:
    """Names of the grammars shipped in ``grammars/``."""
    return sorted(p.stem for p in GRAMMARS_DIR.glob("*.lark"))


def grammar_source(grammar: str | Path) -> tuple[str, str]:
    """``(lark source, display name)`` for a built-in name, a ``.lark`` path, or grammar text.

    A string counts as grammar text when it contains a newline or a ``:`` rule definition and
    is neither a built-in name nor an existing file.
    """
    if isinstance(grammar, Path):
        if not grammar.is_file():
            raise GrammarError(f"grammar file {grammar} does not exist")
        return grammar.read_text(), str(grammar)
    if not isinstance(grammar, str) or not grammar.strip():
        raise GrammarError(f"grammar must be a built-in name, a path or lark text, got {grammar!r}")
    name = grammar.strip()
    if name in builtin_grammars():
        return (GRAMMARS_DIR / f"{name}.lark").read_text(), name
    path = Path(name).expanduser()
    if "\n" not in name and (path.suffix == ".lark" or path.is_file()):
        if not path.is_file():
            raise GrammarError(f"grammar file {path} does not exist")
        return path.read_text(), str(path)
    if "\n" in grammar or ":" in grammar:
        return grammar, "<grammar text>"
    raise GrammarError(
        f"unknown grammar {name!r}: use a built-in name ({', '.join(builtin_grammars())}), "
        "a path to a .lark file, or lark grammar text"
    )
