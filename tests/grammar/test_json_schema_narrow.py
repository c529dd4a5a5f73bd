"""Narrowing (``narrow=True``, the default): where the exact grammar is too large or not regular,
the converter keeps a sound subset of the schema's values and warns; ``narrow=False`` raises.

Each row is ``(schema, instance, accepted, valid)``: ``valid`` is checked against ``jsonschema``;
``accepted`` is what the narrowed grammar does. An accepted instance is always valid; rows with
``valid and not accepted`` are the documented cost of the narrowing.
"""

from __future__ import annotations

import json
import warnings

import pytest

from decoding.grammar.json_schema import (
    NarrowingWarning,
    Unsupported,
    compile_json_schema,
    json_schema_to_lark,
)
from tests.grammar.grammar_fixtures import get_tokenizer
from tests.grammar.test_json_schema import accepts, oracle

UNIQUE = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
ONE_OF_KEYS = {
    "type": "object",
    "oneOf": [
        {"properties": {"error": {"type": "string"}}, "required": ["error"]},
        {"properties": {"n": {"type": "integer"}}, "required": ["n"]},
    ],
}
LONG_STRINGS = {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "string", "minLength": 2000}]}
MANY_OBJECTS = {"anyOf": [{"type": "object", "properties": {"v": {"type": "integer", "minimum": i}}} for i in range(8)]}
WIDE_KEYS = {
    "type": "object",
    "properties": {"id": {"type": "string"}},
    "patternProperties": {"^x[0-9a-zA-Z_-]{1,255}$": {"type": "integer"}},
}

# a narrowed oneOf under a complement: the complement must come from the exact oneOf (the
# complement of a narrowed subset would be a superset); here only {"a": null, "b": null} is valid
NOT_ONE_OF = {"anyOf": [{"not": {"oneOf": [{"const": {"a": None, "b": None}}, {}]}}]}

ROWS = [
    # uniqueItems over an open item set: arrays of at most one item
    ("unique empty", UNIQUE, [], True, True),
    ("unique one", UNIQUE, ["a"], True, True),
    ("unique two distinct (narrowed)", UNIQUE, ["a", "b"], False, True),
    ("unique repeated", UNIQUE, ["a", "a"], False, False),
    # oneOf objects that may overlap: told apart by the required key of the other alternative
    ("oneOf keys first", ONE_OF_KEYS, {"error": "x"}, True, True),
    ("oneOf keys second", ONE_OF_KEYS, {"n": 1}, True, True),
    ("oneOf keys both", ONE_OF_KEYS, {"error": "x", "n": 1}, False, False),
    ("oneOf keys other key invalid (narrowed)", ONE_OF_KEYS, {"error": "x", "n": "y"}, False, True),
    # string alternatives without a small automaton are left out
    ("strings short", LONG_STRINGS, "ab", True, True),
    ("strings long (narrowed)", LONG_STRINGS, "x" * 2000, False, True),
    ("strings middle", LONG_STRINGS, "abcd", False, False),
    # object unions beyond the product caps keep the alternatives that fit, in schema order
    ("objects kept", MANY_OBJECTS, {"v": 3}, True, True),
    ("objects below every minimum", MANY_OBJECTS, {"v": -1}, False, False),
    ("objects wrong type", MANY_OBJECTS, {"v": "x"}, False, False),
    # other property names whose language has no small regex (here: not the pattern) are not generated
    ("wide keys listed", WIDE_KEYS, {"id": "a"}, True, True),
    ("wide keys pattern key", WIDE_KEYS, {"id": "a", "xk": 1}, True, True),
    ("wide keys other name (narrowed)", WIDE_KEYS, {"id": "a", "k": 1}, False, True),
    ("wide keys bad listed", WIDE_KEYS, {"id": 1}, False, False),
    ("not oneOf: the constant", NOT_ONE_OF, {"a": None, "b": None}, True, True),
    ("not oneOf: another object", NOT_ONE_OF, {"a": None}, False, False),
    ("not oneOf: a number", NOT_ONE_OF, 1, False, False),
]

_cache: dict[str, object] = {}


def narrowed(schema):
    key = json.dumps(schema, sort_keys=True)
    if key not in _cache:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _cache[key] = compile_json_schema(schema, get_tokenizer("smollm2"), warm_seconds=0)
        if schema is not NOT_ONE_OF:
            assert any(issubclass(w.category, NarrowingWarning) and "narrowed" in str(w.message) for w in caught), key
    return _cache[key]


@pytest.mark.parametrize(("name", "schema", "instance", "accepted", "valid"), ROWS, ids=[r[0] for r in ROWS])
def test_narrowed_grammar_accepts_a_sound_subset(name, schema, instance, accepted: bool, valid: bool) -> None:
    assert oracle(schema, instance) == valid, name
    assert accepts(narrowed(schema), json.dumps(instance, ensure_ascii=False)) == accepted, name
    assert valid or not accepted  # soundness


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [(UNIQUE, "uniqueItems"), (LONG_STRINGS, "pattern"), (MANY_OBJECTS, "anyOf"), (WIDE_KEYS, "patternProperties")],
)
def test_without_narrowing_the_construct_is_named(schema, keyword: str) -> None:
    with pytest.raises(Unsupported) as err:
        json_schema_to_lark(schema, narrow=False)
    assert err.value.keyword == keyword


def test_one_of_without_narrowing_is_exact() -> None:
    g = compile_json_schema(ONE_OF_KEYS, get_tokenizer("smollm2"), warm_seconds=0, narrow=False)
    for inst in [{"error": "x"}, {"n": 1}, {"error": "x", "n": 1}, {"error": "x", "n": "y"}]:
        assert accepts(g, json.dumps(inst)) == oracle(ONE_OF_KEYS, inst), inst


def test_non_strict_mode_does_not_narrow() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = compile_json_schema(UNIQUE, get_tokenizer("smollm2"), strict=False, warm_seconds=0)
    assert not any(issubclass(w.category, NarrowingWarning) for w in caught)
    assert accepts(g, '["a", "a"]')  # strict=False drops uniqueItems (an over-approximation, documented)


def test_nothing_left_after_narrowing_is_named() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NarrowingWarning)
        with pytest.raises(Unsupported, match="left after narrowing.*multipleOf"):
            json_schema_to_lark({"type": "integer", "multipleOf": 0.123456789})
