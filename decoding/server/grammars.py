"""Grammars and JSON Schemas of requests: compiled once, off the event loop, cached.

A request's ``grammar`` is a shipped grammar's name or lark text (never a path: a request must not
read the server's files, nor may its ``%import`` lines); ``response_format`` ``json_object`` is the
JSON Schema ``{"type": "object"}`` (any JSON object, as OpenAI's JSON mode answers) and ``json_schema``
goes through :func:`decoding.grammar.json_schema_to_lark`. Compilation runs in a
worker thread; requests for a grammar being compiled wait for that compilation, later ones find it
in the cache. A grammar that does not compile is a 400 with the compiler's message (also cached).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections import OrderedDict
from typing import Any

from decoding.api.causal_lm import compiled_grammar
from decoding.grammar import builtin_grammars
from decoding.grammar.loader import check_library_imports
from decoding.server.errors import APIError, bad_request
from decoding.server.schemas import TextRequest


def grammar_request(req: TextRequest, max_bytes: int) -> tuple[str, Any, str] | None:
    """``(kind, value, param)`` of the request's constraint (``"grammar"`` text or name, ``"schema"``
    dict), or None; checks sizes and combinations."""
    fmt = req.response_format
    wants_format = fmt is not None and fmt.type != "text"
    if wants_format and req.grammar is not None:
        raise bad_request("give response_format or grammar, not both", "grammar")
    if fmt is not None and fmt.type == "json_object":
        if fmt.json_schema is not None:
            raise bad_request("response_format json_object takes no json_schema (use type json_schema)", "response_format")
        return "schema", {"type": "object"}, "response_format"  # JSON mode answers an object, not any JSON value
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise bad_request("response_format json_schema needs json_schema.schema (a JSON Schema)", "response_format")
        schema = fmt.json_schema.schema_
        if len(json.dumps(schema).encode()) > max_bytes:
            raise bad_request(f"the JSON Schema is larger than this server's limit of {max_bytes} bytes", "response_format")
        return "schema", schema, "response_format"
    if fmt is not None and fmt.json_schema is not None:
        raise bad_request("response_format text takes no json_schema", "response_format")
    if req.grammar is None:
        return None
    text = req.grammar
    if len(text.encode()) > max_bytes:
        raise bad_request(f"the grammar is larger than this server's limit of {max_bytes} bytes", "grammar")
    if text.strip() not in builtin_grammars() and "\n" not in text and ":" not in text:
        raise bad_request(f"unknown grammar {text.strip()!r}: give lark grammar text or a shipped grammar "
                          f"({', '.join(builtin_grammars())})", "grammar")
    return "grammar", text, "grammar"


def _compile(lm: Any, kind: str, value: Any) -> tuple[Any, str]:
    if kind == "schema":
        return compiled_grammar(lm, None, value)
    if value.strip() not in builtin_grammars():
        check_library_imports(value)  # lark would look for other imported grammars among the server's files
    # a newline makes the text count as grammar text (or a shipped name), never as a file path
    return compiled_grammar(lm, value if "\n" in value else value + "\n", None)


class GrammarCache:
    """Compiled grammars by source, the oldest dropped past ``size`` entries.

    Args:
        lm: the causal LM the grammars are compiled against.
        size: grammars kept.
    """

    def __init__(self, lm: Any, size: int = 64) -> None:
        self.lm = lm
        self.size = size
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="grammar")
        self._entries: OrderedDict[str, asyncio.Future] = OrderedDict()
        self.compilations = 0

    async def get(self, kind: str, value: Any, param: str) -> tuple[Any, str]:
        """``(compiled grammar, lark source)``; raises a 400 :class:`APIError` if it does not compile."""
        key = kind + ":" + (json.dumps(value, sort_keys=True) if kind == "schema" else value)
        future = self._entries.get(key)
        if future is None:
            self.compilations += 1
            loop = asyncio.get_running_loop()
            future = asyncio.ensure_future(loop.run_in_executor(self.executor, _compile, self.lm, kind, value))
            self._entries[key] = future
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        try:
            return await asyncio.shield(future)
        except (ValueError, RecursionError, NotImplementedError) as e:
            what = "the JSON Schema" if kind == "schema" else "the grammar"
            raise APIError(400, f"{what} cannot be compiled: {e}", param=param, code="invalid_grammar") from None

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
