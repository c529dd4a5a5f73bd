"""GPT-2's byte-level BPE from its ranks file (``gpt2.tiktoken``, shipped in the openai-whisper sdist).

The file holds one ``<base64 token bytes> <rank>`` per line (50,256 merges' results); id 50256
is ``<|endoftext|>``. :func:`gpt2_ranks_path` finds the file in the cache, or downloads the
openai-whisper source distribution from PyPI once (``pip download``) and extracts just that file.
Encoding is classic BPE (arXiv:1508.07909) over GPT-2's pre-tokenizer regex.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from decoding.cache import cache_dir
from decoding.tokenizers.vocab import Vocabulary

ASSET = "whisper/assets/gpt2.tiktoken"
EOT = "<|endoftext|>"
# GPT-2's pre-tokenizer (contractions, letters, numbers, other symbols, whitespace).
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def gpt2_ranks_path() -> Path:
    """Path of ``gpt2.tiktoken`` in ``cache_dir('gpt2')``, fetched from the openai-whisper sdist if absent."""
    target = cache_dir("gpt2") / "gpt2.tiktoken"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="gpt2-ranks.") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "openai-whisper",
            "-d",
            tmp,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(Path(tmp).glob("openai*whisper*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise FileNotFoundError(
                f"could not download the openai-whisper sdist to get {ASSET} (pip said: {proc.stderr[-500:]}); "
                f"put the file at {target} by hand"
            )
        with tarfile.open(archives[0]) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(ASSET)), None)
            if member is None:
                raise FileNotFoundError(f"{archives[0].name} has no {ASSET}")
            src = tar.extractfile(member)
            assert src is not None
            part = target.with_suffix(".part")
            with open(part, "wb") as f:
                shutil.copyfileobj(src, f)
            part.replace(target)
    return target


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """Parse a tiktoken ranks file: ``base64(token) rank`` per line."""
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected '<base64> <rank>', got {line[:60]!r}")
        ranks[base64.b64decode(parts[0])] = int(parts[1])
    return ranks


class Gpt2Tokenizer:
    """GPT-2 byte-level BPE: ``encode(str) -> ids``, ``decode(ids) -> str``, ``vocabulary()``.

    Args:
        ranks: token bytes -> rank (= id); usually from :func:`read_ranks`.
    """

    def __init__(self, ranks: dict[bytes, int]) -> None:
        self.ranks = ranks
        self.eos_token_id = len(ranks)
        self.token_bytes: list[bytes] = [b""] * len(ranks)
        for tok, rank in ranks.items():
            self.token_bytes[rank] = tok
        import regex

        self._pat = regex.compile(PATTERN)

    def __len__(self) -> int:
        return len(self.ranks) + 1

    def vocabulary(self) -> Vocabulary:
        toks: tuple[bytes | None, ...] = (*self.token_bytes, None)
        return Vocabulary(toks, self.eos_token_id, "byte_level", frozenset({self.eos_token_id}))

    def _bpe(self, piece: bytes) -> list[int]:
        parts = [piece[i : i + 1] for i in range(len(piece))]
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get(parts[i] + parts[i + 1])
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            parts[at : at + 2] = [parts[at] + parts[at + 1]]
        return [self.ranks[p] for p in parts]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens)."""
        out: list[int] = []
        for m in self._pat.finditer(text):
            out.extend(self._bpe(m.group(0).encode("utf-8")))
        return out

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (invalid UTF-8 replaced); the EOS id decodes to nothing."""
        return b"".join(self.token_bytes[i] for i in ids if i != self.eos_token_id).decode("utf-8", "replace")


def load_gpt2() -> Gpt2Tokenizer:
    """The GPT-2 tokenizer (50,257 ids) from the cached or downloaded ranks file."""
    return Gpt2Tokenizer(read_ranks(gpt2_ranks_path()))
