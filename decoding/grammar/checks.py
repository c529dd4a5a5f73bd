"""Loading a grammar with lark, and the compile-time check that it can ever be completed."""

from __future__ import annotations

from typing import Any

from decoding.grammar.loader import GrammarError


def load_lark(source: str, name: str, start: str = "start") -> Any:
    """Build an LALR ``lark.Lark``; lark's own message (with line and column) on malformed input.

    Grammars that lark can only parse with Earley (LALR conflicts) get a clear error.
    """
    from lark import Lark
    from lark.exceptions import GrammarError as LarkGrammarError
    from lark.exceptions import LarkError

    try:
        return Lark(source, parser="lalr", lexer="contextual", start=start)
    except LarkGrammarError as e:
        msg = str(e)
        if "collision" in msg.lower() or "conflict" in msg.lower():
            raise GrammarError(
                f"grammar {name} is not LALR(1) (lark would need parser='earley'): {msg.strip()}\n"
                "Grammar constraints need an LALR(1) grammar: remove the ambiguity, e.g. by factoring "
                "common prefixes of alternatives or giving terminals priorities."
            ) from e
        raise GrammarError(f"grammar {name}: {msg.strip()}") from e
    except LarkError as e:
        raise GrammarError(f"grammar {name} is malformed: {str(e).strip()}") from e
    except (OSError, AssertionError) as e:  # lark's %import found no grammar file
        raise GrammarError(f"grammar {name}: an %import names no grammar lark can find ({e}); lark's own "
                           "grammars are imported as '%import common.WS'") from e


def unproductive_rules(lark_grammar: Any) -> list[str]:
    """Rules that derive no finite string of terminals (every alternative needs itself again)."""
    rules = lark_grammar.rules
    productive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for r in rules:
            o = r.origin.name
            if o in productive:
                continue
            if all(s.is_term or s.name in productive for s in r.expansion):
                productive.add(o)
                changed = True
    return sorted({str(r.origin.name) for r in rules} - {str(p) for p in productive})


def check_terminals_defined(lark_grammar: Any) -> None:
    """Raise :class:`GrammarError` naming the terminals the rules use without a pattern (``%declare``
    leaves them to a post-lexer, which a token constraint does not have)."""
    defined = {t.name for t in lark_grammar.terminals}
    used = {s.name for r in lark_grammar.rules for s in r.expansion if s.is_term}
    missing = sorted(used - defined)
    if missing:
        raise GrammarError(
            f"the grammar uses terminal(s) {', '.join(missing)} without a pattern (%declare leaves them to a "
            f"post-lexer); a constraint needs every terminal's text: define each, e.g. {missing[0]}: /.../"
        )


def check_completable(lark_grammar: Any, start: str = "start") -> None:
    """Raise :class:`GrammarError` naming the rules if no text can ever complete ``start``."""
    bad = unproductive_rules(lark_grammar)
    if start in bad:
        named = [b for b in bad if not b.startswith("_") or b == start]
        raise GrammarError(
            f"no text can complete the grammar: rule(s) {', '.join(repr(b) for b in named or bad)} "
            f"can never finish (every alternative needs the rule again); add a base case to each"
        )
