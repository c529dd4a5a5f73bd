"""Grammar-constrained decoding: lark grammars compiled to exact token masks over any vocabulary.

>>> g = compile_grammar("json", tokenizer)          # built-in name, .lark path or lark text
>>> constraint = g.constraint(batch_size=4)          # a decoding.core Constraint
>>> matcher = g.matcher()                            # one sequence: mask / accept_token / rollback / fork
>>> g = compile_json_schema(schema, tokenizer)       # JSON Schema (dict, JSON text or .json path)
"""

from decoding.grammar.compiled import CompiledGrammar, compile_grammar
from decoding.grammar.constraint import GrammarConstraint
from decoding.grammar.json_schema import compile_json_schema, json_schema_to_lark
from decoding.grammar.loader import GrammarError, builtin_grammars, grammar_source
from decoding.grammar.matcher import GrammarDeadEnd, GrammarMatcher

__all__ = [
    "CompiledGrammar",
    "GrammarConstraint",
    "GrammarDeadEnd",
    "GrammarError",
    "GrammarMatcher",
    "builtin_grammars",
    "compile_grammar",
    "compile_json_schema",
    "grammar_source",
    "json_schema_to_lark",
]
