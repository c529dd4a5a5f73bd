"""The SentencePiece tokenizer the engine's own text models share (RADD, AS-ARM).

``models/tokenizer-brown-4k/tokenizer.model`` is a 4,096-piece byte-fallback BPE model trained
on the Brown corpus train split (Kudo & Richardson 2018, arXiv:1808.06226). A small vocabulary
keeps the embedding of a small model small (4,096 x 256 = 1 M parameters, against 12.6 M for
SmolLM2's 49,152 ids) and every piece is seen often in a 1 M-word corpus; byte fallback encodes
any text. Ids: 0 ``<unk>``, 1 ``<s>``, 2 ``</s>`` (end of text, written after every document),
3 ``<pad>``. Models that need a mask id use ``vocab_size`` (one past the last piece).

Rebuild (deterministic)::

    python -m decoding.data.tokenizer --corpus brown --vocab-size 4096 --out models/tokenizer-brown-4k
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKENIZER = REPO_ROOT / "models" / "tokenizer-brown-4k" / "tokenizer.model"


def default_tokenizer_path() -> Path:
    """Path of the shipped Brown tokenizer (``models/tokenizer-brown-4k/tokenizer.model``)."""
    if not DEFAULT_TOKENIZER.is_file():
        raise FileNotFoundError(
            f"{DEFAULT_TOKENIZER} is missing; rebuild it with "
            "`python -m decoding.data.tokenizer --corpus brown --vocab-size 4096 --out models/tokenizer-brown-4k`"
        )
    return DEFAULT_TOKENIZER


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class TextTokenizer:
    """A SentencePiece model: ``encode(str) -> list[int]``, ``decode(ids) -> str``.

    Args:
        path: a ``.model`` file, or a folder holding ``tokenizer.model`` (default: the shipped one).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        import sentencepiece as spm

        p = Path(path) if path is not None else default_tokenizer_path()
        if p.is_dir():
            p = p / "tokenizer.model"
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer model {p} does not exist")
        self.path = p
        self.sp = spm.SentencePieceProcessor(model_file=str(p))
        self.vocab_size: int = int(self.sp.get_piece_size())
        self.unk_id: int = int(self.sp.unk_id())
        self.bos_id: int = int(self.sp.bos_id())
        self.eos_id: int = int(self.sp.eos_id())
        self.pad_id: int = int(self.sp.pad_id())
        self.special_ids = frozenset(i for i in (self.unk_id, self.bos_id, self.eos_id, self.pad_id) if i >= 0)

    @property
    def sha256(self) -> str:
        """Hash of the model file (recorded in data files and model configs that depend on it)."""
        return file_sha256(self.path)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added)."""
        return list(self.sp.encode(text))

    def decode(self, ids: Sequence[int], stop_at_eos: bool = False) -> str:
        """Text of ``ids``; ids outside ``[0, vocab_size)`` (e.g. a mask id) and specials are skipped.

        With ``stop_at_eos`` the text ends at the first end-of-text id; otherwise an end-of-text id
        becomes a line break (a document boundary inside a window).
        """
        out: list[str] = []
        chunk: list[int] = []
        for i in (int(x) for x in ids):
            if i == self.eos_id:
                if stop_at_eos:
                    break
                out.append(self.sp.decode(chunk))
                chunk = []
                continue
            if 0 <= i < self.vocab_size and i not in self.special_ids:
                chunk.append(i)
        out.append(self.sp.decode(chunk))
        return "\n".join(out)

    def piece(self, i: int) -> str:
        return str(self.sp.id_to_piece(int(i)))


def train_sentencepiece(
    lines: Iterable[str], out_dir: str | Path, vocab_size: int = 4096, model_type: str = "bpe"
) -> Path:
    """Train a byte-fallback SentencePiece model on ``lines`` (one sentence each) into ``out_dir/tokenizer.model``.

    Deterministic: one thread, identity normalization (text round-trips exactly, up to runs of spaces).
    """
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "lines.txt"
        n = 0
        with open(src, "w", encoding="utf-8") as f:
            for line in lines:
                line = line.replace("\n", " ").strip()
                if line:
                    f.write(line + "\n")
                    n += 1
        if n == 0:
            raise ValueError("no text to train the tokenizer on")
        cwd = os.getcwd()
        os.chdir(tmp)  # relative paths: the model file records them, so the bytes do not depend on tmp
        try:
            _train(spm, vocab_size, model_type)
        finally:
            os.chdir(cwd)
        (out / "tokenizer.model").write_bytes((Path(tmp) / "tokenizer.model").read_bytes())
        (out / "tokenizer.vocab").write_bytes((Path(tmp) / "tokenizer.vocab").read_bytes())
    return out / "tokenizer.model"


def _train(spm, vocab_size: int, model_type: str) -> None:  # noqa: ANN001 (the sentencepiece module)
    spm.SentencePieceTrainer.train(
        input="lines.txt",
        model_prefix="tokenizer",
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        num_threads=1,
        max_sentence_length=16384,
        minloglevel=2,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from decoding.data.text_corpus import CORPORA, load_brown, load_corpus

    ap = argparse.ArgumentParser(prog="python -m decoding.data.tokenizer", description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="brown", choices=CORPORA)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--out", required=True, help="output folder (gets tokenizer.model and tokenizer.vocab)")
    args = ap.parse_args(argv)
    if args.corpus == "brown":
        lines = load_brown("train", sentences=True)
    else:
        lines = [ln for doc in load_corpus(args.corpus, "train") for ln in doc.splitlines()]
    path = train_sentencepiece(lines, args.out, vocab_size=args.vocab_size)
    print(f"wrote {path} (sha256 {file_sha256(path)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
