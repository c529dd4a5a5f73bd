"""Text of a sample as it grows: decoded incrementally, cut at stop strings, sent as server-sent events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from decoding.api.causal_lm import cut_at_stop, held_back


class TextStream:
    """The text of one sample, and the part of it that is safe to send so far.

    The whole token list is decoded each time (a token's text may depend on its neighbours);
    text after a stop string is never sent, and while the text ends with the beginning of a stop
    string or with an unfinished UTF-8 character (U+FFFD) that tail is held back.
    """

    def __init__(self, lm: Any, stops: Sequence[str]) -> None:
        self.lm = lm
        self.stops = [s for s in stops if s]
        self.tokens: list[int] = []
        self.sent = ""

    def text(self) -> str:
        """The whole text so far, cut before the first stop string."""
        return cut_at_stop(self.lm.decode(self.tokens), self.stops)[0]

    def push(self, tokens: Sequence[int], final: bool) -> str:
        """Add ``tokens``; returns the new text that may be sent now (everything when ``final``)."""
        self.tokens.extend(tokens)
        text, stopped = cut_at_stop(self.lm.decode(self.tokens), self.stops)
        if not (final or stopped):
            text = text[: len(text) - held_back(text, self.stops)]
        if not text.startswith(self.sent):  # a token changed how earlier bytes decode: resend nothing new
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event (``data: ...``), as OpenAI streams them."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"
