"""``decoding text``: an alias of ``decoding generate`` whose ``--model`` defaults to the embedded SmolLM2."""

from __future__ import annotations

from typing import Any

from decoding.cli import generate


def add_parser(subparsers: Any) -> Any:
    return generate.add_parser(subparsers, "text", "smollm2")
