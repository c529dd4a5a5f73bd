"""Compile-time check that lark's first-match lexer and this engine's maximal munch agree.

lark's contextual lexer tries the terminals of a lexer context in one order (priority, then
maximum width, then pattern length, then name; string terminals that a same-priority regex
terminal matches are dropped and found by re-typing the regex's match, ``_create_unless`` in
``lark/lexer.py``) and takes the *first* that matches, with Python ``re``'s first matching
alternative inside a terminal. :class:`~decoding.grammar.compiled.CompiledGrammar` lexes
greedily. The two disagree on a lexeme ``v`` of a terminal ``B`` when a terminal ``A`` that lark
tries first matches a nonempty proper prefix of ``v`` but not ``v`` itself: lark then lexes the
prefix as ``A`` (``INT`` before ``DATE``), where this engine lexes ``v`` as ``B``. Likewise inside
one terminal whose regex is a top-level alternation: the first alternative that matches a
nonempty prefix of ``v`` is the one ``re`` keeps (``\\d+|\\d+\\.\\d+`` matches ``3`` of ``3.14``).

Both are decided exactly on the terminals' byte automata (:mod:`~decoding.grammar.regex_bytes`,
:mod:`~decoding.grammar.dfa`), assuming ``re`` returns the longest match of the alternative it
keeps (true of greedy patterns without nested ambiguous alternations). Pairs of terminals are
checked pairwise, each ordered pair once per grammar (and its answer kept for the process, by the
two regexes): a third terminal tried even earlier that matches all of ``v`` would hide the
difference, which this check does not look for (it may then refuse a grammar lark would lex alike).
"""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from decoding.grammar.dfa import DEAD, START, ByteDFA, _closure, build_dfa
from decoding.grammar.loader import GrammarError
from decoding.grammar.regex_bytes import ByteNFA, RegexError, byte_edges, parse_regex

if TYPE_CHECKING:
    from decoding.grammar.compiled import CompiledGrammar

if sys.version_info >= (3, 11):
    import re._constants as _c
else:  # pragma: no cover - Python 3.10
    import sre_constants as _c

_READABLE = (
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,-_:;+*/=\"'()[]{}<>!?#$%&@^|~`\\"
)
# Bytes in the order they are tried when an example text is spelled out: readable ones first.
_PREFERRED = np.array(list(_READABLE) + [b for b in range(256) if b not in _READABLE], dtype=np.int64)
_SINGLE_CHAR = (_c.LITERAL, _c.NOT_LITERAL, _c.IN, _c.ANY)
# A top-level alternation with more alternatives is not checked (enumerations of literals).
MAX_ALTERNATIVES = 64


def _successors(deltas: list[np.ndarray], states: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
    """``(byte, next states)`` per distinct successor tuple of ``states`` in their DFAs (one byte each,
    the first of :data:`_PREFERRED` that leads there)."""
    keys = np.zeros(256, dtype=np.int64)
    for delta, q in zip(deltas, states, strict=True):
        keys = keys * delta.shape[0] + delta[q]
    _, first = np.unique(keys[_PREFERRED], return_index=True)
    out = []
    for pos in np.sort(first).tolist():
        b = int(_PREFERRED[pos])
        out.append((b, tuple(int(delta[q, b]) for delta, q in zip(deltas, states, strict=True))))
    return out


def prefix_divergence(first: ByteDFA, second: ByteDFA) -> bytes | None:
    """A string ``v`` of ``second``'s language, not of ``first``'s, with a nonempty proper prefix in ``first``'s.

    Breadth first over ``(second's state, first's state, whether first accepted a prefix)``: the
    shortest such ``v`` (readable bytes preferred), or ``None`` when there is none. The DFAs are
    trimmed (:func:`~decoding.grammar.dfa.build_dfa`): state ``0`` is dead.
    """
    rows = [second.delta, first.delta]
    start = (START, START, False)
    parent: dict[tuple[int, int, bool], tuple[tuple[int, int, bool], int] | None] = {start: None}
    todo = [start]
    while todo:
        nxt = []
        for node in todo:
            qb, qa, done = node
            for b, (qb2, qa2) in _successors(rows, (qb, qa)):
                if qb2 == DEAD or (qa2 == DEAD and not done):
                    continue
                a_acc = qa2 != DEAD and bool(first.accepts[qa2])
                node2 = (qb2, qa2, done or a_acc)
                if node2 in parent:
                    continue
                parent[node2] = (node, b)
                if done and second.accepts[qb2] and not a_acc:
                    out = bytearray()
                    cur: Any = node2
                    while parent[cur] is not None:
                        cur, byte = parent[cur]
                        out.append(byte)
                    return bytes(reversed(out))
                nxt.append(node2)
        todo = nxt
    return None


def alternation_divergence(dfa: ByteDFA, n: int) -> tuple[bytes, int, int] | None:
    """For the alternatives ``0..n-1`` of one regex (bit ``k`` of ``dfa``'s accepts is alternative ``k``):
    a string ``v`` of the regex whose earliest alternative matching a nonempty prefix of ``v``
    does not match ``v`` (``re`` keeps that alternative's shorter match), as ``(v, that
    alternative, an alternative matching v)``; ``None`` when there is none.
    """
    start = (START, n)
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {start: None}
    todo = [start]
    rows = [dfa.delta]
    while todo:
        nxt = []
        for node in todo:
            q, m = node
            for b, (q2,) in _successors(rows, (q,)):
                if q2 == DEAD:
                    continue
                acc = dfa.accepts[q2]
                low = (acc & -acc).bit_length() - 1 if acc else n
                node2 = (q2, min(m, low))
                if node2 in parent:
                    continue
                parent[node2] = (node, b)
                if acc and m < low:
                    out = bytearray()
                    cur: Any = node2
                    while parent[cur] is not None:
                        cur, byte = parent[cur]
                        out.append(byte)
                    return bytes(reversed(out)), m, low
                nxt.append(node2)
        todo = nxt
    return None


@lru_cache(maxsize=1 << 12)
def regex_facts(regex: str) -> tuple[bytes | None, tuple[bytes, int, int] | None]:
    """``(literal, alternation hit)`` of one terminal regex, memoised (terminals recur across grammars).

    ``literal``: the UTF-8 bytes when the regex matches exactly one string (literal characters
    only), else ``None``. ``alternation hit``: :func:`alternation_divergence` of the alternatives
    when the regex is one top-level alternation (possibly inside groups, possibly after single
    characters that re's parser moved out of it) of at most :data:`MAX_ALTERNATIVES`, else ``None``.
    """
    try:
        parsed: Any = parse_regex(regex)
    except RegexError:
        return None, None
    items = list(parsed)
    flags = parsed.state.flags
    literal = None
    if not flags & re.IGNORECASE and all(op is _c.LITERAL for op, _ in items):
        literal = "".join(chr(av) for _, av in items).encode("utf-8", "surrogatepass")
    if "|" not in regex:
        return literal, None
    while len(items) == 1 and items[0][0] is _c.SUBPATTERN:
        _group, add, delete, sub = items[0][1]
        flags = (flags | add) & ~delete
        items = list(sub)
    # re's parser moves a prefix that all alternatives share out of the branch (``ab|abc`` is
    # ``ab(?:|c)``); single characters match one way, so the branch still picks the whole match.
    *head, last = items if items else [None]
    if (
        last is None
        or last[0] is not _c.BRANCH
        or not all(op in _SINGLE_CHAR for op, _ in head)
        or not 1 < len(last[1][1]) <= MAX_ALTERNATIVES
    ):
        return literal, None
    alts = [head + list(alt) for alt in last[1][1]]
    nfa = ByteNFA()
    tags: dict[int, int] = {}
    starts = []
    for k, alt in enumerate(alts):
        s, e = nfa.new(), nfa.new()
        nfa._seq(list(alt), flags, s, e)
        starts.append(s)
        tags[e] = tags.get(e, 0) | 1 << k
    return literal, alternation_divergence(build_dfa(nfa, starts, tags), len(alts))


class _Nfa:
    """One terminal of a grammar's shared NFA, simulated directly (no DFA) for the cheap cases."""

    __slots__ = ("nfa", "start", "end", "first")

    def __init__(self, nfa: ByteNFA, start: int, end: int) -> None:
        self.nfa, self.start, self.end = nfa, start, end
        first = 0
        for st in self.closure([start]):
            for lo, hi, _d in byte_edges(nfa.edges[st]):
                first |= (1 << (hi + 1)) - (1 << lo)
        self.first = first  # bit b: the terminal's strings can start with byte b

    def closure(self, states: list[int]) -> frozenset[int]:
        return _closure(self.nfa, states, {self.end: 1})

    def run(self, data: bytes) -> list[frozenset[int]]:
        """The state sets after each prefix of ``data`` (the empty one first), until none is left."""
        cur = self.closure([self.start])
        out = [cur]
        for b in data:
            nxt = [d for st in cur for lo, hi, d in byte_edges(self.nfa.edges[st]) if lo <= b <= hi]
            if not nxt:
                break
            cur = self.closure(nxt)
            out.append(cur)
        return out


def _pair_may_diverge(a: _Nfa, b: _Nfa, lit_a: bytes | None, lit_b: bytes | None) -> bool | None:
    """Whether ``a`` tried first lexes a prefix of a lexeme of ``b`` (see :func:`prefix_divergence`),
    decided without DFAs when the first bytes differ or one side is a single string; ``None``: undecided."""
    if not a.first & b.first:
        return False
    if lit_a is not None:  # L(a) = {s}: b has a string longer than s that starts with s
        sets = b.run(lit_a)
        return len(sets) == len(lit_a) + 1 and any(b.nfa.edges[st] for st in sets[-1])
    if lit_b is not None:  # L(b) = {t}: a matches a nonempty proper prefix of t but not t
        sets = a.run(lit_b)
        full = len(sets) == len(lit_b) + 1 and a.end in sets[-1]
        return not full and any(a.end in st for st in sets[1 : len(lit_b)])
    return None


_PAIRS: OrderedDict[tuple[str, str], bytes | None] = OrderedDict()  # (regex a, regex b) -> example or None
MAX_PAIRS = 1 << 15


def _show(data: bytes) -> str:
    return repr(data.decode("utf-8", "backslashreplace"))


def _lark_unless_removed(lark_terms: dict[str, Any], names: list[str], flags: int = 0) -> set[str]:
    """String terminals of one context that lark's ``_create_unless`` drops from the scanner."""
    from lark.lexer import PatternRE, PatternStr

    strs = [lark_terms[n] for n in names if n in lark_terms and isinstance(lark_terms[n].pattern, PatternStr)]
    res = [lark_terms[n] for n in names if n in lark_terms and isinstance(lark_terms[n].pattern, PatternRE)]
    out = set()
    for s in strs:
        for r in res:
            if s.priority != r.priority or not s.pattern.flags <= r.pattern.flags:
                continue
            m = re.match(r.pattern.to_regexp(), s.pattern.value, flags)
            if m and m.group(0) == s.pattern.value:
                out.add(s.name)
                break
    return out


def _where(g: CompiledGrammar, ctx: int, names: tuple[str, ...]) -> str:
    """A rule that uses the terminals (for messages), with the context's LALR state."""
    state = next(st for st, c in g._ctx_of_lalr.items() if c == ctx)
    rules = sorted({o for o, exp in g.spec.rules if set(names) & set(exp)})
    shown = [r for r in rules if not r.startswith("_")] or rules
    rule = f"rule {', '.join(repr(r) for r in shown[:3])}" if shown else "the %ignore terminals"
    return f"{rule} (parser state {state})"


def check_lexer_order(g: CompiledGrammar) -> None:
    """Raise :class:`GrammarError` when lark's own lexer would lex a text this engine generates differently.

    For every lexer context of ``g`` (the terminals of an LALR state plus the ``%ignore`` ones) and
    every ordered pair ``A`` before ``B`` in lark's scanner order, and for every terminal whose
    regex is a top-level alternation; see the module docstring. The message names the terminals,
    a rule they occur in, an example text and the fix.
    """
    terms = g.terminals
    lark_terms: dict[str, Any] = {}
    re_flags = 0
    if g.lark is not None:
        lark_terms = {t.name: t for t in g.lark.lexer_conf.terminals}
        re_flags = g.lark.lexer_conf.g_regex_flags
    nfas: dict[int, _Nfa] = {}

    def nfa_of(i: int) -> _Nfa:
        n = nfas.get(i)
        if n is None:
            n = nfas[i] = _Nfa(g._nfa, g._starts[i], g._ends[i])
        return n

    def dfa_of(i: int) -> ByteDFA:
        return build_dfa(g._nfa, [g._starts[i]], {g._ends[i]: 1})

    def lark_key(i: int) -> tuple:
        t = terms[i]
        return (-t.priority, -t.max_width, -t.value_len, t.name)

    # 1. one terminal: re keeps the first alternative that matches
    used = set()
    for bits in g._ctx_terms:
        used.update(i for i in range(len(terms)) if bits >> i & 1)
    for i in sorted(used):
        hit = regex_facts(terms[i].regex)[1]
        if hit is not None:
            v, k, j = hit
            ctx = next(c for c, b in enumerate(g._ctx_terms) if b >> i & 1)
            raise GrammarError(
                f"terminal {terms[i].name} ({terms[i].regex!r}) is lexed differently by lark: its alternative "
                f"{k + 1} comes before alternative {j + 1} and matches a shorter prefix of {_show(v)} (in "
                f"{_where(g, ctx, (terms[i].name,))}); Python's re keeps the first alternative that matches, so "
                f"lark's parser rejects texts this constraint generates. Write the longer alternative first, "
                f"or make the alternatives prefix-free"
            )

    # 2. two terminals of one context: lark takes the first that matches
    checked: set[tuple[int, int]] = set()
    for ctx, bits in enumerate(g._ctx_terms):
        idx = [i for i in range(len(terms)) if bits >> i & 1]
        names = [terms[i].name for i in idx]
        removed = _lark_unless_removed(lark_terms, names, re_flags) if lark_terms else set()
        order = sorted((i for i in idx if terms[i].name not in removed), key=lark_key)
        for x, a in enumerate(order):
            for b in order[x + 1 :]:
                if (a, b) in checked:
                    continue
                checked.add((a, b))
                key = (terms[a].regex, terms[b].regex)
                if key in _PAIRS:
                    _PAIRS.move_to_end(key)
                    v = _PAIRS[key]
                else:
                    quick = _pair_may_diverge(
                        nfa_of(a), nfa_of(b), regex_facts(key[0])[0], regex_facts(key[1])[0]
                    )
                    v = None if quick is False else prefix_divergence(dfa_of(a), dfa_of(b))
                    _PAIRS[key] = v
                    if len(_PAIRS) > MAX_PAIRS:
                        _PAIRS.popitem(last=False)
                if v is None:
                    continue
                ta, tb = terms[a], terms[b]
                sets = nfa_of(a).run(v)
                longest = max((n for n, st in enumerate(sets) if nfa_of(a).end in st), default=0)
                raise GrammarError(
                    f"terminals {ta.name} ({ta.regex!r}) and {tb.name} ({tb.regex!r}) in {_where(g, ctx, (ta.name, tb.name))}: "
                    f"lark's lexer tries {ta.name} first and lexes {_show(v[:longest])} of {_show(v)} as {ta.name}, "
                    f"where this constraint lexes {_show(v)} as {tb.name}, so lark's parser rejects texts it "
                    f"generates. Give {tb.name} a higher priority ({tb.name}.{ta.priority + 1}: ...), or make the "
                    f"terminals' languages prefix-free"
                )
