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
    is neither a built-in name nor an existing file. A string with a newline anywhere (before or
    after the rest, too) is never read as a path: a caller that appends one to untrusted text (the
    server) is sure that no file is opened.
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
    if "\n" not in grammar and (path.suffix == ".lark" or path.is_file()):
        if not path.is_file():
            raise GrammarError(f"grammar file {path} does not exist")
        return path.read_text(), str(path)
    if "\n" in grammar or ":" in grammar:
        return grammar, "<grammar text>"
    raise GrammarError(
        f"unknown grammar {name!r}: use a built-in name ({', '.join(builtin_grammars())}), "
        "a path to a .lark file, or lark grammar text"
    )


def lark_library_grammars() -> list[str]:
    """Names of the grammars lark ships (``common``, ``unicode``, ...): what ``%import NAME.X`` finds without a file."""
    import lark

    return sorted(p.stem for p in (Path(lark.__file__).parent / "grammars").glob("*.lark"))


def check_library_imports(source: str) -> None:
    """Raise :class:`GrammarError` unless every ``%import`` of ``source`` names a grammar of lark's own library.

    For grammar text from someone who must not read this machine's files (a server's request): lark
    resolves a relative import (``%import .name.X``) and any library name it does not ship against the
    file system. Lines are as lark reads them: ``%import`` at the start of a line, after blanks.
    """
    library = lark_library_grammars()
    for number, line in enumerate(source.splitlines(), 1):
        words = line.split()
        if not words or words[0] != "%import":
            continue
        path = words[1] if len(words) > 1 else ""
        module = path.split("(")[0].lstrip(".").split(".")[0]
        if path.startswith(".") or module not in library:
            raise GrammarError(
                f"grammar line {number}: {line.strip()!r} imports a grammar file; only lark's own grammars can be "
                f"imported here ({', '.join(library)}), e.g. '%import common.WS'"
            )
