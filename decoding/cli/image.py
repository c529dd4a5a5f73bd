"""``decoding image``: an alias of ``decoding generate`` whose ``--model`` defaults to fashion-large."""

from __future__ import annotations

from typing import Any

from decoding.cli import generate


def add_parser(subparsers: Any) -> Any:
    return generate.add_parser(subparsers, "image", "fashion-large")
