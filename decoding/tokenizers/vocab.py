"""The bytes behind every token id, for byte-level BPE and SentencePiece tokenizers.

- Byte-level BPE (GPT-2, SmolLM2, Llama 3): token strings spell bytes through GPT-2's
  byte -> printable-character table (``Ġ`` is the space byte ``0x20``); we invert that table.
- SentencePiece (Llama 2, Mistral, T5): ``▁`` stands for a space and byte-fallback tokens
  ``<0xE2>`` stand for one raw byte each.

A multi-byte UTF-8 character may be split across tokens; that is why constraints walk bytes.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def byte_level_decoder() -> dict[str, int]:
    """GPT-2's printable character -> byte table (the inverse of its ``bytes_to_unicode``).

    Bytes that are printable Latin-1 (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for
    themselves; the other 68 bytes are shifted to ``chr(256 + k)`` in increasing order.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table: dict[str, int] = {chr(b): b for b in keep}
    shift = 0
    for b in range(256):
        if b not in table.values():
            table[chr(256 + shift)] = b
            shift += 1
    return table


@dataclass(frozen=True)
class Vocabulary:
    """One entry per token id.

    Attributes:
        tokens: ``tokens[i]`` is the byte string token ``i`` appends, or ``None`` for special /
            control tokens (never allowed by a grammar, except ``eos_token_id`` at the end).
        eos_token_id: the end-of-sequence id, or ``None``.
        kind: ``"byte_level"``, ``"sentencepiece"`` or ``"bytes"`` (given directly).
    """

    tokens: tuple[bytes | None, ...]
    eos_token_id: int | None = None
    kind: str = "bytes"
    special_ids: frozenset[int] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.tokens)

    def decode(self, ids: Sequence[int]) -> bytes:
        """The bytes of ``ids`` (special tokens contribute nothing)."""
        return b"".join(self.tokens[i] or b"" for i in ids)


def _token_to_bytes_byte_level(tok: str, table: dict[str, int]) -> bytes | None:
    try:
        return bytes(table[c] for c in tok)
    except KeyError:
        return None


def _token_to_bytes_sentencepiece(tok: str) -> bytes:
    m = _BYTE_FALLBACK.match(tok)
    if m:
        return bytes([int(m.group(1), 16)])
    return tok.replace("\u2581", " ").encode("utf-8")


def _detect_kind(tokenizer: Any, strings: Sequence[str | None]) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        try:
            spec = json.loads(backend.to_str())
        except Exception:  # noqa: BLE001 - fall back to the vocabulary heuristic below
            spec = {}
        dec = json.dumps(spec.get("decoder") or {})
        if '"ByteLevel"' in dec:
            return "byte_level"
        if "ByteFallback" in dec or "Metaspace" in dec or "\u2581" in dec:
            return "sentencepiece"
    sample = [s for s in strings if s]
    if any("\u2581" in s for s in sample) or any(_BYTE_FALLBACK.match(s) for s in sample):
        return "sentencepiece"
    if any("\u0120" in s for s in sample):
        return "byte_level"
    raise ValueError(
        "cannot tell how this tokenizer spells bytes (neither byte-level BPE nor SentencePiece); "
        "pass a decoding.tokenizers.Vocabulary with the token bytes instead"
    )


def vocabulary(tokenizer: Any, eos_token_id: int | None = None, vocab_size: int | None = None) -> Vocabulary:
    """The :class:`Vocabulary` of ``tokenizer``.

    Args:
        tokenizer: a Hugging Face tokenizer (fast or slow), a :class:`Vocabulary`, an object with a
            ``vocabulary()`` method (e.g. :class:`~decoding.tokenizers.Gpt2Tokenizer`) or a sequence
            of ``bytes`` / ``None`` per id.
        eos_token_id: overrides the tokenizer's EOS id.
        vocab_size: pad with ``None`` (never allowed) up to the model's logits width.
    """
    if isinstance(tokenizer, Vocabulary):
        vocab = tokenizer
    elif hasattr(tokenizer, "vocabulary") and callable(tokenizer.vocabulary):
        vocab = tokenizer.vocabulary()
    elif isinstance(tokenizer, Sequence) and not isinstance(tokenizer, (str, bytes)):
        toks = tuple(None if t is None else bytes(t) for t in tokenizer)
        vocab = Vocabulary(toks, None, "bytes", frozenset(i for i, t in enumerate(toks) if t is None))
    elif hasattr(tokenizer, "convert_ids_to_tokens"):
        vocab = _hf_vocabulary(tokenizer)
    else:
        raise ValueError(
            f"unsupported tokenizer {type(tokenizer).__name__}: pass a Hugging Face tokenizer, "
            "a decoding.tokenizers.Vocabulary or a list of token bytes"
        )
    if eos_token_id is not None:
        if not 0 <= eos_token_id < max(len(vocab), vocab_size or 0):
            raise ValueError(f"eos_token_id {eos_token_id} is outside the vocabulary (size {len(vocab)})")
        vocab = Vocabulary(vocab.tokens, eos_token_id, vocab.kind, vocab.special_ids)
    if vocab_size is not None and vocab_size > len(vocab):
        pad = (None,) * (vocab_size - len(vocab))
        vocab = Vocabulary(vocab.tokens + pad, vocab.eos_token_id, vocab.kind, vocab.special_ids)
    elif vocab_size is not None and vocab_size < len(vocab):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer's {len(vocab)} tokens")
    return vocab


_HF_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hf_vocabulary(tokenizer: Any) -> Vocabulary:
    try:
        cached = _HF_CACHE.get(tokenizer)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and len(cached) == len(tokenizer):
        return cached
    vocab = _hf_vocabulary_uncached(tokenizer)
    try:
        _HF_CACHE[tokenizer] = vocab
    except TypeError:
        pass
    return vocab


def _hf_vocabulary_uncached(tokenizer: Any) -> Vocabulary:
    n = len(tokenizer)
    strings = tokenizer.convert_ids_to_tokens(list(range(n)))
    special: set[int] = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    for i, tok in added.items():
        if getattr(tok, "special", True):
            special.add(int(i))
    kind = _detect_kind(tokenizer, strings)
    table = byte_level_decoder()
    out: list[bytes | None] = []
    for i, s in enumerate(strings):
        if i in special or s is None:
            out.append(None)
        elif i in added:  # a non-special added token is literal text
            out.append(str(getattr(added[i], "content", s)).encode("utf-8"))
        elif kind == "byte_level":
            out.append(_token_to_bytes_byte_level(s, table))
        else:
            out.append(_token_to_bytes_sentencepiece(s))
    out = [None if b == b"" else b for b in out]
    eos = getattr(tokenizer, "eos_token_id", None)
    return Vocabulary(tuple(out), eos, kind, frozenset(i for i, b in enumerate(out) if b is None))
