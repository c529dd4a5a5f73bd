"""Where the engine keeps converted models and downloaded assets: ``$DECODING_CACHE`` or ``~/.cache/decoding``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache folder (created), optionally a subfolder of it."""
    root = Path(os.environ.get("DECODING_CACHE") or Path.home() / ".cache" / "decoding")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
