"""The public entry points: JSON Schema -> lark grammar text, and -> a compiled token constraint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from decoding.grammar.json_schema.emit import GrammarBuilder
from decoding.grammar.json_schema.keywords import InvalidSchema, Normalizer
from decoding.grammar.json_schema.shapes import Unsupported


def load_schema(schema: Any) -> Any:
    """A schema from a ``dict``/``bool``, JSON text, or a path to a ``.json`` file."""
    if isinstance(schema, Path) or (isinstance(schema, str) and schema.strip()[:1] not in ("{", "[", "t", "f")):
        path = Path(schema).expanduser()
        if not path.is_file():
            raise InvalidSchema(f"JSON Schema file {path} does not exist (pass a dict, JSON text or a path)")
        schema = path.read_text()
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise InvalidSchema(f"the JSON Schema is not valid JSON: {e}") from None
    if not isinstance(schema, (dict, bool)):
        raise InvalidSchema(f"a JSON Schema is an object or a boolean, got {type(schema).__name__}")
    return schema


def json_schema_to_lark(schema: Any, *, strict: bool = True, draft: int | None = None, check: bool = True) -> str:
    """A lark grammar (LALR(1), whitespace ignored) whose sentences are JSON texts valid under ``schema``.

    Every text the grammar accepts is valid under the schema (soundness). Where the schema asks
    for something no such grammar can express exactly, ``strict=True`` raises
    :class:`~decoding.grammar.json_schema.Unsupported` naming the keyword and its location;
    ``strict=False`` warns (:class:`~decoding.grammar.json_schema.SchemaWarning`) and drops the
    keyword, so the grammar accepts more than the schema. Object properties are generated in the
    order of ``properties`` (other keys may come anywhere); see ``docs/perf/json_schema.md`` for
    the documented limits.

    Args:
        schema: a ``dict``/``bool``, JSON text, or a path to a ``.json`` file.
        strict: raise on unsupported keywords (default) instead of over-approximating.
        draft: 4, 6, 7, 2019 or 2020; default: from ``$schema``, else 2020-12.
        check: build the LALR(1) table once to verify the grammar (``compile_json_schema`` skips it).

    Raises:
        Unsupported: a construct without an exact grammar (strict mode), naming keyword and path.
        InvalidSchema: a malformed schema.
    """
    schema = load_schema(schema)
    norm = Normalizer(schema, draft=draft, strict=strict)
    builder = GrammarBuilder(norm)
    text = builder.lark(builder.value(norm.root_ref))
    if check:
        from decoding.grammar.checks import load_lark
        from decoding.grammar.loader import GrammarError

        try:
            load_lark(text, "json-schema")
        except GrammarError as e:
            raise _not_lalr(e) from None
    return text


def _not_lalr(err: Exception) -> Unsupported:
    return Unsupported(
        "anyOf",
        "alternatives (anyOf/oneOf/enum/if) of objects or arrays could not be told apart by one-token lookahead "
        f"({str(err).splitlines()[0][:300]})",
    )


def compile_json_schema(
    schema: Any,
    tokenizer: Any,
    *,
    strict: bool = True,
    draft: int | None = None,
    eos_token_id: int | None = None,
    vocab_size: int | None = None,
    warm_seconds: float = 1.5,
) -> Any:
    """Compile ``schema`` against a tokenizer: a :class:`~decoding.grammar.CompiledGrammar`.

    The result gives token masks for JSON texts valid under the schema
    (``.constraint(batch_size, max_tokens=...)`` for the decode loop, ``.matcher()`` for one
    sequence). Arguments as in :func:`json_schema_to_lark` and
    :func:`~decoding.grammar.compile_grammar`.

    Example:
        >>> g = compile_json_schema({"type": "object", "properties": {"n": {"type": "integer"}}}, tok)
        >>> constraint = g.constraint(batch_size=1, max_tokens=256)
    """
    from decoding.grammar.compiled import compile_grammar
    from decoding.grammar.loader import GrammarError

    text = json_schema_to_lark(schema, strict=strict, draft=draft, check=False)
    try:
        return compile_grammar(text, tokenizer, eos_token_id, vocab_size=vocab_size, warm_seconds=warm_seconds)
    except GrammarError as e:
        if "not LALR" in str(e):
            raise _not_lalr(e) from None
        raise
