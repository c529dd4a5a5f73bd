"""Infill templates: text with blanks, for models that fill positions (RADD, AS-ARM).

Every run of two or more underscores is a blank of as many tokens as it has underscores
(``"____"`` = 4 tokens), or of ``blank_tokens`` tokens when that is given. The text between blanks
is encoded segment by segment (SentencePiece marks each segment's start as a word start), so
blanks sit between words. Given tokens never change.
"""

from __future__ import annotations

import re
from typing import Any

from decoding.api.options import OptionError

_BLANK = re.compile(r"_{2,}")


def parse_template(template: str, tokenizer: Any, max_len: int, blank_tokens: int | None = None) -> tuple[list[int], list[bool]]:
    """``(ids, is_blank)`` of a template; blank positions hold id 0 (a placeholder).

    Raises:
        OptionError: no blank, ``blank_tokens < 1``, or more tokens than ``max_len`` (the model's context).
    """
    if blank_tokens is not None and blank_tokens < 1:
        raise OptionError(f"blank_tokens must be >= 1, got {blank_tokens}")
    if not _BLANK.search(template):
        raise OptionError(f"infill template {template!r} has no blank: write a run of underscores (e.g. ____) where text goes")
    ids: list[int] = []
    blank: list[bool] = []

    def text(segment: str) -> None:
        segment = segment.strip()
        if segment:
            enc = tokenizer.encode(segment)
            ids.extend(enc)
            blank.extend([False] * len(enc))

    pos = 0
    for m in _BLANK.finditer(template):
        text(template[pos : m.start()])
        k = blank_tokens if blank_tokens is not None else len(m.group())
        ids.extend([0] * k)
        blank.extend([True] * k)
        pos = m.end()
    text(template[pos:])
    if len(ids) > max_len:
        raise OptionError(f"the infill template is {len(ids)} tokens long, more than the model's context of {max_len}; shorten it")
    return ids, blank
