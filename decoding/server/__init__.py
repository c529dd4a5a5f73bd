"""``decoding serve``: an OpenAI-compatible HTTP server over :func:`decoding.load` / :func:`decoding.decode`.

>>> from decoding.server import ServerConfig, create_app
>>> app = create_app(decoding.load("smollm2"), ServerConfig(served_name="smollm2"))

Continuous batching (requests join and leave the running batch between decode steps),
structured outputs (JSON Schema, lark grammars, grammar-aligned sampling), images, OpenAI's
error shape. Needs the ``serve`` extra (fastapi, uvicorn).
"""

from decoding.server.app import create_app
from decoding.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
