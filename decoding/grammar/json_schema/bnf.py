"""The converter's rules -> a :class:`~decoding.grammar.spec.GrammarSpec`, without grammar text or lark.

:meth:`GrammarBuilder.lark <decoding.grammar.json_schema.emit.GrammarBuilder.lark>` writes the
grammar as lark text; parsing that text back and building lark's tables is most of what compiling
a small schema used to cost. This module takes the same rules as Python objects and produces the
grammar lark would have produced from that text: repetitions are expanded into BNF exactly as
lark 1.3's ``EBNF_to_BNF`` does (``(x)*`` as one left-recursive helper rule shared by equal
bodies, ``(x) ~ a..b`` as alternatives below 50 and as factored helper rules from 50 on),
string literals become terminals with lark's names (``"{"`` is ``LBRACE``), regex terminals keep
lark's width and text length for tie-breaks, and the LALR(1) table comes from
:func:`decoding.grammar.lalr_build.build_lalr`, which builds lark's table for the same rules.
``tests/grammar/test_grammar_lalr_build.py`` checks both (tables state for state, masks token by token).
"""

from __future__ import annotations

import re
import time
from ast import literal_eval
from functools import lru_cache

from decoding.grammar.json_schema.emit import WS_REGEX, GrammarBuilder, Item, NfaBuild, Repeat
from decoding.grammar.json_schema.regex_ast import Node
from decoding.grammar.json_schema.shapes import Unsupported
from decoding.grammar.json_schema.tree_nfa import add_tree, tree_width
from decoding.grammar.lalr_build import LalrConflict, build_lalr
from decoding.grammar.loader import GrammarError
from decoding.grammar.regex_bytes import ByteNFA, RegexError
from decoding.grammar.spec import GrammarSpec, TerminalDef
from decoding.grammar.terminal_nfa import terminal_automata

REPEAT_BREAK_THRESHOLD = 50  # lark: ``x ~ a..b`` with b below this is spelled out as alternatives
SMALL_FACTOR_THRESHOLD = 5  # lark: factors of the helper rules above it
# lark's names of punctuation literals (lark.load_grammar._TERMINAL_NAMES, the ones JSON uses)
LITERAL_NAMES = {"{": "LBRACE", "}": "RBRACE", "[": "LSQB", "]": "RSQB", ":": "COLON", ",": "COMMA"}

Alt = tuple[str, ...]


def grammar_spec(builder: GrammarBuilder, root: str, timings: dict[str, float] | None = None) -> GrammarSpec:
    """The grammar of ``builder``'s rules from ``root`` (what ``lark.Lark(builder.lark(root))`` holds).

    Args:
        timings: if given, CPU seconds (this thread) spent per step are added under ``rules`` (the converter's
            rules, :meth:`GrammarBuilder.kept_rules`), ``bnf``, ``automata`` and ``lalr``.

    Raises:
        Unsupported: as :meth:`GrammarBuilder.kept_rules`, or the rules are not LALR(1).
    """
    clock = _Clock(timings)
    kept = builder.kept_rules(root)
    clock.lap("rules")
    named = builder.used_terminals(kept)
    literals = _Literals({n for n, _ in named} | {"WS"})
    expander = _Expander(literals)
    rules: list[tuple[str, Alt]] = []
    for name, alts in [("start", [[root]]), *kept.items()]:
        rules.extend(expander.rule(name, alts))
    rules.extend(expander.finish())
    _check_duplicates(rules)
    clock.lap("bnf")
    terminals = [
        *_regex_terminals([*named, ("WS", WS_REGEX)], builder.trees, builder.builds),
        *(TerminalDef(n, re.escape(v), True, len(v), len(v)) for v, n in literals.names.items()),
    ]
    clock.lap("automata")
    try:
        table = build_lalr(rules, [t.name for t in terminals], "start")
        clock.lap("lalr")
    except LalrConflict as e:
        raise Unsupported(
            "anyOf",
            "alternatives (anyOf/oneOf/enum/if) of objects or arrays could not be told apart by one-token lookahead "
            f"({str(e).strip().splitlines()[0][:300]})",
        ) from None
    return GrammarSpec(terminals, ("WS",), rules, "start", table)


class _Clock:
    """Adds the CPU seconds since the last lap to ``timings[name]`` (nothing when ``timings`` is None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.thread_time()

    def lap(self, name: str) -> None:
        if self.timings is not None:
            now = time.thread_time()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


class _Literals:
    """String literals -> terminal names, as lark's ``PrepareAnonTerminals`` names them."""

    def __init__(self, taken: set[str]) -> None:
        self.names: dict[str, str] = {}
        self.taken = set(taken)
        self.anon = 0

    def name(self, value: str) -> str:
        name = self.names.get(value)
        if name is None:
            name = LITERAL_NAMES.get(value)
            if name is None and value.isidentifier() and value.upper() not in self.taken:
                name = value.upper()
            if name is None or name in self.taken:
                name = f"__ANON_{self.anon}"
                self.anon += 1
            self.taken.add(name)
            self.names[value] = name
        return name


class _Expander:
    """Lark's EBNF -> BNF for the converter's items (one instance per grammar: helper rules are shared)."""

    def __init__(self, literals: _Literals) -> None:
        self.literals = literals
        self.cache: dict[tuple, str] = {}
        self.new_rules: list[tuple[str, list[Alt]]] = []  # helper rules: (name, alternatives)
        self.count = 0
        self.prefix = ""
        self.symbols: dict[str, str] = {}  # item -> its BNF symbol

    def symbol(self, item: str) -> str:
        s = self.symbols.get(item)
        if s is None:
            s = self.symbols[item] = self.literals.name(item[1:-1]) if item.startswith('"') else item
        return s

    def rule(self, name: str, alts: list[list[Item]]) -> list[tuple[str, Alt]]:
        """``name``'s BNF alternatives: each alternative's options multiplied out, in lark's order."""
        self.prefix = name
        out: list[tuple[str, Alt]] = []
        symbols = self.symbols
        for alt in alts:
            syms = [symbols.get(x) for x in alt]  # type: ignore[call-overload]
            if None in syms:  # a repetition or an item not seen yet (else: one option each, the product is them)
                out.extend((name, a) for a in _product([self.options(x) for x in alt]))
            else:
                out.append((name, tuple(syms)))  # type: ignore[arg-type]
        return out

    def finish(self) -> list[tuple[str, Alt]]:
        """The helper rules made so far."""
        return [(name, a) for name, alts in self.new_rules for a in alts]

    def options(self, item: Item) -> list[Alt]:
        """The alternatives one item stands for (a plain symbol: itself)."""
        if not isinstance(item, Repeat):
            return [(self.symbol(item),)]
        body = tuple(self.symbol(s) for s in item.symbols)
        if item.hi is None:  # lark reads "(b) ~ lo (b)*": the repetition first, then the star
            head = self._repeat(body, item.lo, item.lo) if item.lo else [()]
            star = self._star(body)
            return [a + b for a in head for b in ((star,), ())]
        return self._repeat(body, item.lo, item.hi)

    def _name(self, inner: str) -> str:
        name = f"__{self.prefix}_{inner}_{self.count}"
        self.count += 1
        return name

    def _add(self, key: tuple, inner: str, alts: list[Alt]) -> str:
        name = self.cache.get(key)
        if name is None:
            name = self.cache[key] = self._name(inner)
            self.new_rules.append((name, alts))
        return name

    def _star(self, body: Alt) -> str:
        """``(body)*`` minus the empty case: ``star: body | star body`` (shared by equal bodies)."""
        key = ("star", body)
        name = self.cache.get(key)
        if name is None:
            name = self.cache[key] = self._name("star")
            self.new_rules.append((name, [body, (name, *body)]))
        return name

    def _repeat(self, body: Alt, lo: int, hi: int) -> list[Alt]:
        """``(body) ~ lo..hi`` (lark's ``_generate_repeats``)."""
        if hi < REPEAT_BREAK_THRESHOLD:
            return _dedup([body * n for n in range(lo, hi + 1)])
        # targets: ("body",) repeats the body once; ("nt", name) is a helper rule; ("empty",) nothing
        lo_target: tuple = ("body",)
        for a, b in _small_factors(lo):
            lo_target = self._times(a, b, lo_target, body)
        if hi == lo:
            return [self._spell(lo_target, body)]
        factors = _small_factors(hi - lo + 1)
        target: tuple = ("body",)
        opt: tuple = ("empty",)
        for a, b in factors[:-1]:
            opt = self._times_opt(a, b, target, opt, body)
            target = self._times(a, b, target, body)
        a, b = factors[-1]
        opt = self._times_opt(a, b, target, opt, body)
        return [self._spell(lo_target, body) + self._spell(opt, body)]

    @staticmethod
    def _spell(target: tuple, body: Alt) -> Alt:
        return body if target[0] == "body" else () if target[0] == "empty" else (target[1],)

    def _times(self, a: int, b: int, target: tuple, body: Alt) -> tuple:
        """A helper rule: ``target`` ``a`` times, then ``body`` ``b`` times (lark's ``_add_repeat_rule``)."""
        alt = self._spell(target, body) * a + body * b
        return ("nt", self._add((a, b, target, body), f"repeat_a{a}_b{b}", [alt]))

    def _times_opt(self, a: int, b: int, target: tuple, opt: tuple, body: Alt) -> tuple:
        """A helper rule matching ``body`` 0 to ``a*n+b-1`` times (lark's ``_add_repeat_opt_rule``)."""
        t, o = self._spell(target, body), self._spell(opt, body)
        alts = [t * i + o for i in range(a)] + [t * a + body * i for i in range(b)]
        return ("nt", self._add((a, b, target, body, "opt"), f"repeat_a{a}_b{b}_opt", alts))


def _product(options: list[list[Alt]]) -> list[Alt]:
    """Concatenations of one option per position, the first position varying slowest (lark's order)."""
    out: list[Alt] = [()]
    for opts in options:
        out = [a + b for a in out for b in _dedup(opts)]
    return out


def _dedup(alts: list[Alt]) -> list[Alt]:
    return list(dict.fromkeys(alts))


def _small_factors(n: int) -> list[tuple[int, int]]:
    """``[(a, b), ...]`` with ``x = 1; x = x * a + b`` giving ``n`` (lark's ``small_factors``)."""
    if n <= SMALL_FACTOR_THRESHOLD:
        return [(n, 0)]
    for a in range(SMALL_FACTOR_THRESHOLD, 1, -1):
        r, b = divmod(n, a)
        if a + b <= SMALL_FACTOR_THRESHOLD:
            return [*_small_factors(r), (a, b)]
    raise AssertionError(f"cannot factor {n}")  # pragma: no cover - a = 2 always works


def _check_duplicates(rules: list[tuple[str, Alt]]) -> None:
    """Drop repeated empty alternatives; refuse repeated non-empty ones (as lark does)."""
    seen: set[tuple[str, Alt]] = set()
    keep = []
    for r in rules:
        if r in seen:
            if r[1]:
                raise Unsupported(
                    "anyOf",
                    "alternatives (anyOf/oneOf/enum/if) of objects or arrays could not be told apart by one-token "
                    f"lookahead (Rules defined twice: {r[0]}: {' '.join(r[1])})",
                )
            continue
        seen.add(r)
        keep.append(r)
    rules[:] = keep


@lru_cache(maxsize=1 << 14)
def _lark_value_len(regex: str) -> int:
    """Length of the pattern text lark keeps for ``/regex/`` (escapes such as ``\\x22`` evaluated):
    ``len(lark.load_grammar.eval_escaping(regex))``, with its character loop done by ``re``."""
    if not _LONE_BACKSLASH_AT_END.search(regex):
        w = _ESCAPE_PAIR.sub(_lark_escape, regex)
        w = w.replace('\\"', '"').replace("'", "\\'")
        try:
            return len(literal_eval(f"u'''{w}'''"))
        except (SyntaxError, ValueError):
            pass
    from lark.load_grammar import eval_escaping  # lark's own error for what it cannot read

    return len(eval_escaping(regex))


_ESCAPE_PAIR = re.compile(r"\\(.)", re.DOTALL)
_LONE_BACKSLASH_AT_END = re.compile(r"(?<!\\)(?:\\\\)*\\\Z")


def _lark_escape(m: re.Match) -> str:
    """One backslash pair as lark's ``eval_escaping`` rewrites it before ``literal_eval``."""
    c = m.group(1)
    if c == "\\":
        return "\\\\\\\\"
    return "\\" + c if c in "Uuxnftr" else "\\\\" + c


def _regex_terminals(
    named: list[tuple[str, str]], trees: dict[str, tuple[Node, str]], builds: dict[str, NfaBuild] | None = None
) -> list[TerminalDef]:
    """Regex terminals with lark's tie-break data; their automata are built now (from the tree
    the regex was written from, or by the converter's own builder, when there is one), or found built.

    Raises:
        GrammarError: a regex the byte automaton cannot express (names the terminal).
    """
    builders = {r: _tree_builder(*trees[r]) for _, r in named if r in trees}
    builders.update((r, builds[r]) for _, r in named if builds and r in builds)
    try:
        states = terminal_automata([r for _, r in named], builders)[1]
    except RegexError as err:
        bad = next(n for n, r in named if r == getattr(err, "pattern", None))
        raise GrammarError(f"terminal {bad} ({getattr(err, 'pattern', '')!r}): {err}") from err
    return [
        TerminalDef(n, r, False, w, _lark_value_len(r))
        for (n, r), (_, _, w) in zip(named, states, strict=True)
    ]


def _tree_builder(tree: Node, spell: str):
    def build(nfa: ByteNFA) -> tuple[int, int, int]:
        return (*add_tree(nfa, tree, spell), tree_width(tree, spell))

    return build
