"""A grammar as plain data: terminals, BNF rules and an LALR(1) table, whoever built it.

:class:`~decoding.grammar.compiled.CompiledGrammar` reads only this. It comes either from a
``lark.Lark`` object (:func:`spec_from_lark`, for lark grammar text) or straight from the JSON
Schema converter (:mod:`decoding.grammar.json_schema.bnf`, which builds the table itself with
:func:`decoding.grammar.lalr_build.build_lalr` and never writes or parses grammar text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

END = "$END"

# Terminals of lark's common.lark written with look-behind / lazy quantifiers, and the same
# language without them: ESCAPED_STRING is '"', then characters other than newline where a
# backslash escapes the next one, then the first unescaped '"'.
KNOWN_REWRITES = {'".*?(?<!\\\\)(\\\\\\\\)*?"': r'"(?:[^"\\\n]|\\[^\n])*"'}


@dataclass(frozen=True)
class TerminalDef:
    """One terminal.

    Attributes:
        name: the terminal's name (upper case, as lark names them).
        regex: its language, in Python ``re`` syntax.
        literal: whether it is a string literal (a literal wins a tie against a regex, lark's keyword rule).
        max_width: the longest match in characters (``re``'s width; about 2**64 when unbounded).
        value_len: the length of lark's pattern text (the last tie-break before the name).
        priority: lark's terminal priority (higher wins).
    """

    name: str
    regex: str
    literal: bool
    max_width: int
    value_len: int
    priority: int = 0

    def rank_key(self) -> tuple:
        """Sort key among terminals that match the same lexeme: the first wins (lark's order)."""
        return (-self.priority, 0 if self.literal else 1, -self.max_width, -self.value_len, self.name)


@dataclass(frozen=True)
class ParseTable:
    """An LALR(1) table over interned ``int`` states.

    Attributes:
        actions: per state, symbol name -> ``("s", target state)`` for a shift or goto, or
            ``("r", symbols popped, rule origin, rule index)`` for a reduction.
        start_state: the state of the empty stack.
        end_state: the state reached by the start rule's goto from ``start_state``; ``$END`` is
            accepted when a reduction on ``$END`` lands there.
    """

    actions: list[dict[str, tuple]]
    start_state: int
    end_state: int


@dataclass(frozen=True)
class GrammarSpec:
    """Terminals, rules and table of one grammar.

    Attributes:
        terminals: every terminal the lexer knows (bit ``i`` of the lexer masks is ``terminals[i]``).
        ignore: names of the terminals skipped between lexemes (``%ignore``).
        rules: ``(origin, expansion)`` BNF rules (symbol names; terminals are the upper-case ones
            in ``terminals``); ``table``'s reductions index this list.
        start: the start rule.
        table: the LALR(1) table.
        source: the ``lark.Lark`` object it came from, if any.
    """

    terminals: list[TerminalDef]
    ignore: tuple[str, ...]
    rules: list[tuple[str, tuple[str, ...]]]
    start: str
    table: ParseTable
    source: Any = None


def spec_from_lark(lark_grammar: Any) -> GrammarSpec:
    """The :class:`GrammarSpec` of a ``lark.Lark`` object built with ``parser="lalr"``."""
    from lark.lexer import PatternStr
    from lark.parsers.lalr_analysis import Shift

    conf = lark_grammar.lexer_conf
    terminals = []
    for t in conf.terminals:
        regex = t.pattern.to_regexp()
        terminals.append(
            TerminalDef(
                t.name,
                KNOWN_REWRITES.get(regex, regex),
                isinstance(t.pattern, PatternStr),
                t.pattern.max_width,
                len(t.pattern.value),
                t.priority,
            )
        )
    rules = [(str(r.origin.name), tuple(s.name for s in r.expansion)) for r in lark_grammar.rules]
    index = {id(r): i for i, r in enumerate(lark_grammar.rules)}
    by_key = {(o, e): i for i, (o, e) in enumerate(rules)}
    start = lark_grammar.options.start[0]
    table = lark_grammar.parser.parser.parser.parse_table
    states = list(table.states)
    number = {s: i for i, s in enumerate(states)}
    actions: list[dict[str, tuple]] = []
    for s in states:
        row: dict[str, tuple] = {}
        for sym, (action, arg) in table.states[s].items():
            if action is Shift:
                row[sym] = ("s", number[arg])
            else:
                key = (str(arg.origin.name), tuple(x.name for x in arg.expansion))
                r = index.get(id(arg), by_key.get(key, -1))
                row[sym] = ("r", len(arg.expansion), key[0], r)
        actions.append(row)
    parse_table = ParseTable(actions, number[table.start_states[start]], number[table.end_states[start]])
    return GrammarSpec(terminals, tuple(conf.ignore), rules, start, parse_table, lark_grammar)
