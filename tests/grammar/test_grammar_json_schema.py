"""JSON Schema -> lark: the generated grammar accepts valid documents and rejects invalid ones."""

from __future__ import annotations

import json

import pytest
from lark import Lark

from decoding.grammar import compile_grammar, json_schema_to_lark
from decoding.tokenizers import Vocabulary

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", 3]}, "minItems": 1, "maxItems": 2},
        "kind": {"const": "person"},
        "score": {"type": ["number", "null"]},
        "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "kind"],
}

VALID = [
    {"name": "Ann", "kind": "person"},
    {"name": "Bob", "age": 31, "tags": ["a", 3], "kind": "person", "score": None, "code": "AB12", "ok": True},
    {"name": "x" * 8, "tags": ["b"], "kind": "person", "score": -1.5e3},
]
INVALID = [
    {"kind": "person"},  # required name missing
    {"name": "", "kind": "person"},  # minLength
    {"name": "x" * 9, "kind": "person"},  # maxLength
    {"name": "A", "tags": [], "kind": "person"},  # minItems
    {"name": "A", "tags": ["a", "b", 3], "kind": "person"},  # maxItems
    {"name": "A", "tags": ["c"], "kind": "person"},  # enum
    {"name": "A", "kind": "robot"},  # const
    {"name": "A", "kind": "person", "age": 1.5},  # integer
    {"name": "A", "kind": "person", "code": "a1"},  # pattern
    {"name": "A", "kind": "person", "extra": 1},  # not a listed property
    {"kind": "person", "name": "A"},  # keys come in the schema's order
]


def _vocab() -> Vocabulary:
    toks = tuple(bytes([b]) for b in range(256)) + (None,)
    return Vocabulary(toks, 256, "bytes", frozenset({256}))


def test_schema_grammar_accepts_valid_and_rejects_invalid() -> None:
    text = json_schema_to_lark(SCHEMA)
    parser = Lark(text, parser="lalr")
    g = compile_grammar(text, _vocab(), warm_seconds=0)
    for doc, want in [(d, True) for d in VALID] + [(d, False) for d in INVALID]:
        for s in (json.dumps(doc), json.dumps(doc, indent=2)):
            try:
                parser.parse(s)
                lark_ok = True
            except Exception:  # noqa: BLE001
                lark_ok = False
            m = g.matcher()
            try:
                m.accept_bytes(s.encode())
                fast_ok = m.is_complete()
            except ValueError:
                fast_ok = False
            assert lark_ok == want and fast_ok == want, (s, lark_ok, fast_ok)


@pytest.mark.parametrize(
    ("schema", "word"),
    [
        ({"type": "string", "format": "email"}, "format"),
        ({"type": "integer", "minimum": 3}, "minimum"),
        ({"oneOf": [{"type": "string"}]}, "oneOf"),
        ({"$ref": "#/defs/x"}, "$ref"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True},
            "additionalProperties",
        ),
        ({"type": "string", "pattern": "(?=a)b"}, "pattern"),
    ],
)
def test_unsupported_keywords_are_named(schema: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word.replace("$", r"\$")):
        json_schema_to_lark(schema)


def test_empty_schema_is_any_json() -> None:
    parser = Lark(json_schema_to_lark({}), parser="lalr")
    parser.parse('{"a": [1, "x", null]}')
