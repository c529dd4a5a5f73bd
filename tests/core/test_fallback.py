"""Fallback warnings keep the end of the error, where a compiler's failing line is."""

from __future__ import annotations

from decoding.core.fallback import FallbackWarning, error_tail


def test_error_tail_keeps_the_useful_end() -> None:
    msg = ("SubprocException: An exception occurred in a subprocess:\n\nName=_split_kernel\n" + "x" * 2000
           + "\nAssertionError: Both operands must be same dtype. Got fp64 and fp32\n\n"
           "Set TORCHDYNAMO_VERBOSE=1 for the internal stack trace (please do this especially if you're reporting a bug)\n"
           'For even more developer context, set TORCH_LOGS="+dynamo"\n')
    tail = error_tail(RuntimeError(msg))
    assert tail.startswith("RuntimeError: ...") and tail.endswith("Got fp64 and fp32")
    assert len(tail) == len("RuntimeError: ...") + 400
    assert error_tail(ValueError("short")) == "ValueError: short"
    assert issubclass(FallbackWarning, UserWarning)
