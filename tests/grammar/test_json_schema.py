"""JSON Schema -> token constraint: every keyword, through SmolLM2's tokenizer and the real constraint.

Each case of :mod:`tests.grammar.json_schema_cases` is serialised with ``json.dumps(ensure_ascii=False)``,
tokenised, and fed token by token (each token must be in the constraint's mask), then EOS: the
schema accepts the instance iff the table says it is valid; the table itself is checked against
the ``jsonschema`` package (the oracle).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from decoding.grammar.json_schema import (
    InvalidSchema,
    SchemaWarning,
    Unsupported,
    compile_json_schema,
    json_schema_to_lark,
)
from tests.grammar.grammar_fixtures import get_tokenizer
from tests.grammar.json_schema_cases import CASES

_compiled: dict[str, object] = {}

# ECMA-262 and Python's re disagree here; the grammar takes the intersection (see ecma.py)
ORACLE_DIFFERS = {"pattern digit is ascii"}


def compiled(schema):
    key = json.dumps(schema, sort_keys=True)
    if key not in _compiled:
        _compiled[key] = compile_json_schema(schema, get_tokenizer("smollm2"), warm_seconds=0)
    return _compiled[key]


def accepts(g, text: str) -> bool:
    """Feed ``text`` token by token through a batch-1 constraint, then EOS."""
    tok = get_tokenizer("smollm2")
    ids = tok.encode(text, add_special_tokens=False)
    assert g.vocab.decode(ids) == text.encode()
    c = g.constraint(1)
    for t in ids:
        if not bool(c.mask()[0, t]):
            return False
        c.advance(torch.tensor([t]))
    return bool(c.mask()[0, g.eos_token_id])


def oracle(schema, instance) -> bool | None:
    """``jsonschema``'s verdict, or ``None`` where it cannot judge (format without a checker installed)."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extras (pip install -e .[dev])")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    fmts = set()
    stack = [schema]
    while stack:
        s = stack.pop()
        if isinstance(s, dict):
            if isinstance(s.get("format"), str):
                fmts.add(s["format"])
            stack.extend(s.values())
        elif isinstance(s, list):
            stack.extend(s)
    checker = cls.FORMAT_CHECKER
    if any(f not in checker.checkers and f != "int32" for f in fmts):
        return None
    return cls(schema, format_checker=checker).is_valid(instance)


@pytest.mark.parametrize(("name", "schema", "instance", "valid"), CASES, ids=[c[0] for c in CASES])
def test_case_accepted_iff_valid(name: str, schema, instance, valid: bool) -> None:
    g = compiled(schema)
    text = json.dumps(instance, ensure_ascii=False)
    assert accepts(g, text) == valid, (name, text)


@pytest.mark.parametrize(("name", "schema", "instance", "valid"), CASES, ids=[c[0] for c in CASES])
def test_table_agrees_with_jsonschema(name: str, schema, instance, valid: bool) -> None:
    verdict = oracle(schema, instance)
    if verdict is None:
        pytest.skip("jsonschema has no checker for this format installed")
    assert (verdict == valid) != (name in ORACLE_DIFFERS), name


def test_compact_and_spaced_json_both_accepted() -> None:
    g = compiled(CASES[0][1] if False else {"type": "object", "properties": {"a": {"type": "array"}}})
    for text in ['{"a":[1,2]}', '{ "a" : [ 1 , 2 ] }', '{\n  "a": [\n    1\n  ]\n}']:
        assert accepts(g, text), text


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
        ({"type": "string", "pattern": "(?=a)b"}, "pattern"),
        ({"type": "string", "pattern": "(a)\\1"}, "pattern"),
        ({"$ref": "https://example.com/other.json"}, "$ref"),
        ({"allOf": [{"properties": {"a": {}}}], "unevaluatedProperties": False}, "unevaluatedProperties"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "$ref"),
    ],
)
def test_unsupported_keywords_are_named(schema, keyword: str) -> None:
    with pytest.raises(Unsupported) as err:
        json_schema_to_lark(schema, narrow=False)
    assert err.value.keyword == keyword and keyword in str(err.value)


def test_non_strict_warns_and_over_approximates() -> None:
    schema = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = compile_json_schema(schema, get_tokenizer("smollm2"), strict=False, warm_seconds=0)
    assert any(issubclass(w.category, SchemaWarning) and "uniqueItems" in str(w.message) for w in caught)
    assert accepts(g, '["a", "a"]')  # the dropped keyword is not enforced (documented)
    assert not accepts(g, "[1]")  # the rest still is


@pytest.mark.parametrize(
    ("schema", "match"),
    [
        ({"type": "strnig"}, "unknown type"),
        ({"minLength": "2"}, "minLength"),
        ({"enum": "a"}, "enum"),
        ({"multipleOf": 0}, "multipleOf"),
        ([1], "object or a boolean"),
    ],
)
def test_malformed_schemas_are_clear_errors(schema, match: str) -> None:
    with pytest.raises(InvalidSchema, match=match):
        json_schema_to_lark(schema)


def test_unsatisfiable_schema_is_a_clear_error() -> None:
    with pytest.raises(Unsupported, match="no JSON value"):
        json_schema_to_lark({"type": "integer", "minimum": 3, "maximum": 2})


def test_schema_from_text_and_file(tmp_path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(schema))
    texts = {json_schema_to_lark(schema), json_schema_to_lark(json.dumps(schema)), json_schema_to_lark(path)}
    assert len(texts) == 1
    with pytest.raises(InvalidSchema, match="does not exist"):
        json_schema_to_lark(tmp_path / "missing.json")
