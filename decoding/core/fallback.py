"""Warnings for a fast path that failed and fell back (a compiled step, a CUDA graph).

The engine keeps going when ``torch.compile`` or a CUDA graph capture fails, so a run never dies
for speed; it says so with :class:`FallbackWarning`. Tests and benchmarks that must measure the
fast path turn this category (and only this one) into an error or count it. The message keeps
the *end* of the error: the compiler's useful line (the failing operation) is last, after
tracebacks of wrappers and subprocesses.
"""

from __future__ import annotations

TAIL_CHARS = 400
_BOILERPLATE = ("Set TORCHDYNAMO_VERBOSE=1", "For even more developer context")


class FallbackWarning(UserWarning):
    """A fast path (compiled step, CUDA graph) failed; the engine runs the eager path instead."""


def error_tail(e: BaseException, chars: int = TAIL_CHARS) -> str:
    """``"Type: ...last chars of the message"``, without torch.compile's closing advice lines."""
    lines = [line for line in str(e).rstrip().splitlines() if not line.startswith(_BOILERPLATE)]
    text = "\n".join(lines).rstrip()
    if len(text) > chars:
        text = "..." + text[-chars:]
    return f"{type(e).__name__}: {text}"
