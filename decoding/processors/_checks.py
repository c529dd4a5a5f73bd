"""Argument checks shared by the truncation processors."""

from __future__ import annotations


def check_min_tokens(min_tokens_to_keep: int) -> None:
    """``min_tokens_to_keep`` must be an int >= 1."""
    if isinstance(min_tokens_to_keep, bool) or not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise ValueError(f"min_tokens_to_keep must be an integer >= 1, got {min_tokens_to_keep!r}")
