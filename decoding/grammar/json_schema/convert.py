"""The public entry points: JSON Schema -> lark grammar text, and -> a compiled token constraint."""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from decoding.grammar.json_schema.bnf import grammar_spec
from decoding.grammar.json_schema.emit import GrammarBuilder
from decoding.grammar.json_schema.keywords import InvalidSchema, Normalizer
from decoding.grammar.json_schema.shapes import Unsupported
from decoding.grammar.spec import GrammarSpec


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


def json_schema_to_lark(
    schema: Any, *, strict: bool = True, draft: int | None = None, check: bool = True, narrow: bool = True
) -> str:
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
        check: build the LALR(1) table once to verify the grammar.
        narrow: (strict mode) where the exact grammar is too large or not regular, accept a sound
            subset instead of raising, with a :class:`~decoding.grammar.json_schema.NarrowingWarning`:
            ``uniqueItems`` arrays of at most one item, unions of objects or arrays without the
            alternatives that do not fit (see ``docs/perf/json_schema.md``).

    Raises:
        Unsupported: a construct without an exact grammar (strict mode), naming keyword and path.
        InvalidSchema: a malformed schema.
    """
    builder, root = _build(schema, strict=strict, draft=draft, narrow=narrow)
    text = builder.lark(root)
    if check:
        grammar_spec(builder, root)
    return text


def _build(schema: Any, *, strict: bool, draft: int | None, narrow: bool) -> tuple[GrammarBuilder, str]:
    schema = load_schema(schema)
    norm = Normalizer(schema, draft=draft, strict=strict, narrow=narrow)
    builder = GrammarBuilder(norm)
    return builder, builder.value(norm.root_ref)


def json_schema_spec(
    schema: Any,
    *,
    strict: bool = True,
    draft: int | None = None,
    narrow: bool = True,
    timings: dict[str, float] | None = None,
) -> GrammarSpec:
    """The grammar of :func:`json_schema_to_lark` as a :class:`~decoding.grammar.spec.GrammarSpec`
    (rules, terminals and LALR(1) table, built directly: no grammar text, no lark). Arguments and
    errors as in :func:`json_schema_to_lark`; ``timings`` collects CPU seconds of this thread per step (``schema``:
    reading and normalising the schema, then those of :func:`~.bnf.grammar_spec`)."""
    start = time.thread_time()
    builder, root = _build(schema, strict=strict, draft=draft, narrow=narrow)
    if timings is not None:
        timings["schema"] = timings.get("schema", 0.0) + time.thread_time() - start
    return grammar_spec(builder, root, timings)


def lalr_parser(text: str) -> Any:
    """The ``lark.Lark`` LALR(1) object of a converted grammar, built without lark's lexers.

    The token constraint only reads lark's terminals and parse table, so no contextual lexer
    (one per parser state, each compiling every terminal's regex) is built: that halves the time.

    Raises:
        Unsupported: the grammar has LALR(1) conflicts (alternatives one token cannot tell apart).
    """
    from lark import Lark
    from lark.exceptions import GrammarError as LarkGrammarError
    from lark.lexer import Lexer

    class _NoLexer(Lexer):
        def __init__(self, conf: Any) -> None:
            self.conf = conf

        def lex(self, data: Any) -> Any:
            raise NotImplementedError("grammars from JSON schemas are matched by decoding.grammar, not lark")

    try:
        return Lark(text, parser="lalr", lexer=_NoLexer, start="start")
    except LarkGrammarError as e:
        raise Unsupported(
            "anyOf",
            "alternatives (anyOf/oneOf/enum/if) of objects or arrays could not be told apart by one-token lookahead "
            f"({str(e).strip().splitlines()[0][:300]})",
        ) from None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a schema converts (it allocates many short-lived trees:
    in a large process each full collection walks every live object, about 10% of a median
    compile). Memory is still freed by reference counting; cycles wait for the next collection."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def compile_json_schema(
    schema: Any,
    tokenizer: Any,
    *,
    strict: bool = True,
    draft: int | None = None,
    narrow: bool = True,
    eos_token_id: int | None = None,
    vocab_size: int | None = None,
    warm_seconds: float = 1.5,
    timings: dict[str, float] | None = None,
) -> Any:
    """Compile ``schema`` against a tokenizer: a :class:`~decoding.grammar.CompiledGrammar`.

    The result gives token masks for JSON texts valid under the schema
    (``.constraint(batch_size, max_tokens=...)`` for the decode loop, ``.matcher()`` for one
    sequence). Arguments as in :func:`json_schema_to_lark` and
    :func:`~decoding.grammar.compile_grammar`; ``timings`` collects CPU seconds per step (those of
    :func:`json_schema_spec`, then ``matcher``: the compiled grammar around the table).

    Example:
        >>> g = compile_json_schema({"type": "object", "properties": {"n": {"type": "integer"}}}, tok)
        >>> constraint = g.constraint(batch_size=1, max_tokens=256)
    """
    from decoding.grammar.compiled import CompiledGrammar
    from decoding.tokenizers.vocab import vocabulary

    vocab = vocabulary(tokenizer, eos_token_id, vocab_size)
    if vocab.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: pass eos_token_id")
    with _collector_paused():
        spec = json_schema_spec(schema, strict=strict, draft=draft, narrow=narrow, timings=timings)
        start = time.thread_time()
        compiled = CompiledGrammar(spec, vocab, "json-schema")
        if timings is not None:
            timings["matcher"] = timings.get("matcher", 0.0) + time.thread_time() - start
    if warm_seconds > 0:
        compiled.warm_up(warm_seconds)
    return compiled
