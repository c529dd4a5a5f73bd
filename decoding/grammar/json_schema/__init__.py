"""JSON Schema -> grammar: token masks that admit exactly JSON texts valid under a schema (or fewer).

>>> from decoding.grammar.json_schema import compile_json_schema
>>> g = compile_json_schema(schema, tokenizer)                 # dict, JSON text or a .json path
>>> constraint = g.constraint(batch_size=1, max_tokens=512)     # the decode loop's Constraint
>>> text = json_schema_to_lark(schema)                          # or just the lark grammar

Sound by construction: whatever the grammar accepts validates under the schema. How:

* :mod:`.keywords` reads every keyword (drafts 4 to 2020-12) into a normal form per JSON type
  (:mod:`.shapes`): unions of conjunctions, with ``allOf`` merged, ``oneOf`` made exclusive,
  ``not``/``if`` through complements, ``$ref`` (:mod:`.refs`) kept lazy so recursion stays finite;
* string constraints are regular languages over code points (:mod:`.ecma` for ``pattern`` with
  ECMA-262 semantics on the decoded string, :mod:`.formats`, lengths, literals; automata in
  :mod:`.automaton`), spelled over JSON string escapes (:mod:`.encode`); numbers likewise
  (:mod:`.numbers`: ranges, ``multipleOf``);
* :mod:`.emit` writes LALR(1) rules: objects and arrays as small automata, unions of them as
  product automata split on the values, so overlapping alternatives are factored, not refused.

Unsupported constructs raise :class:`Unsupported` (naming the keyword and its JSON pointer), or
with ``strict=False`` are dropped with a :class:`SchemaWarning` (an over-approximation). Where
the exact grammar is too large or not regular (``uniqueItems`` over open item sets, unions whose
product automaton exceeds the caps), ``narrow=True`` (the default) keeps a sound subset and warns
with a :class:`NarrowingWarning`; ``narrow=False`` raises instead.
"""

from decoding.grammar.json_schema.convert import compile_json_schema, json_schema_to_lark, load_schema
from decoding.grammar.json_schema.keywords import InvalidSchema, NarrowingWarning, SchemaWarning
from decoding.grammar.json_schema.shapes import Unsupported

__all__ = [
    "InvalidSchema",
    "NarrowingWarning",
    "SchemaWarning",
    "Unsupported",
    "compile_json_schema",
    "json_schema_to_lark",
    "load_schema",
]
