"""Shapes -> lark rules: one rule per distinct value shape, objects and arrays as small automata.

Every set of terminals the parser may meet at one point is disjoint (one terminal per string
union, per number union, per property name, per region of other names), so the contextual lexer
never has to guess; alternatives of a union start with different terminals or are merged.

* Objects (:mod:`.objects`) are walks through their listed properties in schema order, other
  keys anywhere in between; arrays (:mod:`.arrays`) are a ``prefixItems`` chain, then lark's
  bounded repetition ``("," item) ~ a..b`` (``maxItems: 1000`` does not nest).
* A union of several object (or array) alternatives is their product automaton: all alternatives
  advance together on each key, and where their values for that key differ the value is split
  into disjoint regions (``a and b``, ``a and not b``, ...; :func:`product_moves`), so the parser
  learns from the value which alternatives survive. This is how overlapping
  ``anyOf``/``oneOf``/``enum`` alternatives are factored instead of refused.

Rules that can derive no finite text are removed at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import product as cartesian

from decoding.grammar.json_schema import automaton as fa
from decoding.grammar.json_schema.encode import json_string_regex, literal_json_regex, plain_regex
from decoding.grammar.json_schema.hashing import cached_hash
from decoding.grammar.json_schema.key_trie import add_other_names, other_names_regex
from decoding.grammar.json_schema.keys import KeyLang
from decoding.grammar.json_schema.keywords import Normalizer
from decoding.grammar.json_schema.regex_ast import NOTHING, Node, alt
from decoding.grammar.json_schema.shapes import TRUE_REF, ArrAtom, ObjAtom, Ref, Shape, Unsupported
from decoding.grammar.json_schema.strings import StrAtom
from decoding.grammar.json_schema.tree_nfa import add_literal
from decoding.grammar.regex_bytes import ByteNFA

MAX_PRODUCT_STATES = 600
MAX_GRAMMAR_SYMBOLS = 40_000  # lark's LALR construction takes seconds beyond this
MAX_VENN = 6  # distinct overlapping value schemas split into Venn regions
MAX_PRODUCT_MOVES = 256
WS_REGEX = r"[ \t\n\r]+"  # whitespace between tokens (ignored)
STRING_ANY = r"\x22(?:[^\x22\\\x00-\x1f]|\\[\x22\\\/bfnrt]|\\u[0-9a-fA-F]{4})*\x22"  # lark-safe quotes


@cached_hash
@dataclass(frozen=True)
class Repeat:
    """``(symbols) ~ lo..hi`` in lark (``hi=None``: unbounded)."""

    symbols: tuple[str, ...]
    lo: int
    hi: int | None

    def text(self) -> str:
        body = "(" + " ".join(self.symbols) + ")"
        if self.hi is None:
            return (f"{body} ~ {self.lo} " if self.lo else "") + f"{body}*"
        return f"{body} ~ {self.lo}" if self.lo == self.hi else f"{body} ~ {self.lo}..{self.hi}"


Item = str | Repeat
NfaBuild = Callable[[ByteNFA], tuple[int, int, int]]


class GrammarBuilder:
    """Collects rules and terminals for one schema (see the module docstring)."""

    def __init__(self, norm: Normalizer) -> None:
        self.norm = norm
        self.alg = norm.alg
        self.rules: dict[str, list[list[Item]]] = {}
        self.terminals: dict[str, str] = {}  # regex -> name
        self.trees: dict[str, tuple[Node, str]] = {}  # regex -> (tree, spelling) it was written from
        self.builds: dict[str, NfaBuild] = {}  # regex -> what adds its automaton (without a tree)
        self._name_terms: dict[str, str] = {}  # listed property name -> its terminal
        self._names: set[str] = set()
        self._shape_rules: dict[Shape, str] = {}
        self._memo: dict[tuple, str] = {}
        self.specs: dict[ObjAtom, object] = {}
        self._pending: list[tuple[str, object]] = []
        self._too_large: set[KeyLang] = set()  # key languages without a small regex (narrowing)

    # --- names ----------------------------------------------------------------------------------
    def _fresh(self, hint: str) -> str:
        n = len(self._names)
        name = f"{hint}_{n}"
        self._names.add(name)
        return name

    def terminal(
        self, regex: str, hint: str, tree: Node | None = None, spell: str = "json", build: NfaBuild | None = None
    ) -> str:
        """The terminal of ``regex`` (one per distinct regex); ``tree`` is the tree the regex spells
        (:mod:`.tree_nfa` builds its automaton from it directly), or ``build`` adds its automaton to
        a byte NFA (``(start, accept, longest match)``)."""
        name = self.terminals.get(regex)
        if name is None:
            name = self.terminals[regex] = f"{hint}_{len(self.terminals)}".upper()
            if tree is not None:
                self.trees[regex] = (tree, spell)
            elif build is not None:
                self.builds[regex] = build
        return name

    def _rule(self, key: tuple, hint: str, build) -> str:
        """Memoised rule; ``build(name)`` runs later (:meth:`finish`), so deep schemas do not recurse."""
        name = self._memo.get(key)
        if name is None:
            name = self._memo[key] = self._fresh(hint)
            self.rules[name] = []
            self._pending.append((name, build))
        return name

    def finish(self) -> None:
        """Build every rule that was named but not yet built."""
        while self._pending:
            name, build = self._pending.pop()
            self.rules[name] = build(name)

    # --- values ---------------------------------------------------------------------------------
    def value(self, ref: Ref) -> str:
        return self.shape_rule(self.norm.shape(ref), self.norm.path_of(ref))

    def shape_rule(self, shape: Shape, path: str = "#") -> str:
        name = self._shape_rules.get(shape)
        if name is not None:
            return name
        name = self._shape_rules[shape] = self._fresh("value")
        self.rules[name] = []
        alts: list[list[Item]] = []
        if shape.null:
            alts.append(['"null"'])
        for b in sorted(shape.bools):
            alts.append(['"true"' if b else '"false"'])
        if shape.nums:
            alts.extend(self._numbers(shape, path))
        if shape.strs:
            alts.extend(self._strings(shape.strs, path))
        if shape.arrs:
            arr = self.arrays(shape.arrs, path)
            if arr is not None:
                alts.append([arr])
        if shape.objs:
            obj = self.objects(shape.objs, path)
            if obj is not None:
                alts.append([obj])
        self.rules[name] = alts
        return name

    def _trees(self, atoms: tuple, keyword: str, what: str, path: str) -> list:
        """Each atom's tree; with narrowing on, atoms without a small one are left out (a sound subset)."""
        trees = []
        for atom in atoms:
            try:
                trees.append(atom.tree())
            except fa.TooLarge as e:
                err = Unsupported(keyword, f"{what} have no regular expression within the size caps ({e})", path)
                if not self.norm.narrowing:
                    raise err from None
                self.norm.narrow(err, f"those {what} are left out")
        return trees

    def _numbers(self, shape: Shape, path: str) -> list[list[Item]]:
        tree = alt(*self._trees(shape.nums, "multipleOf", "the numbers", path))
        return [] if tree == NOTHING else [[self.terminal(plain_regex(tree), "NUMBER", tree, "plain")]]

    def _strings(self, atoms: tuple[StrAtom, ...], path: str) -> list[list[Item]]:
        if atoms == (StrAtom(),):
            return [[self.terminal(STRING_ANY, "STRING")]]
        tree = alt(*self._trees(atoms, "pattern", "the string constraints", path))
        return [] if tree == NOTHING else [[self.terminal(json_string_regex(tree), "STRING", tree)]]

    def key_terminal(self, lang: KeyLang | None, name: str | None = None, path: str = "#") -> str:
        """The terminal of one listed name, or of a language of other names."""
        if name is not None:
            term = self._name_terms.get(name)
            if term is None:
                build = partial(add_literal, text=name)  # no tree: names are many and mostly new
                term = self._name_terms[name] = self.terminal(literal_json_regex(name), "KEY", build=build)
            return term
        assert lang is not None
        if lang == KeyLang():
            return self.terminal(STRING_ANY, "KEY")
        if not lang.inside and not lang.outside and not any(0xD800 <= ord(c) <= 0xDFFF for n in lang.names for c in n):
            # straight from the names' trie (key_trie.py); the text is memoised across compiles,
            # the automaton (on a miss of the shared terminal cache) built from a fresh trie
            build = partial(add_other_names, names=lang.names)
            return self.terminal(other_names_regex(lang.names), "KEY", build=build)
        try:
            tree = lang.tree()
        except fa.TooLarge as e:
            raise Unsupported("patternProperties", f"the names of additional properties have no small regex ({e})", path) from None
        return self.terminal(json_string_regex(tree, unicode_escapes=False), "KEY", tree, "json-keys")

    def region_terminal(self, lang: KeyLang, path: str = "#") -> str | None:
        """:meth:`key_terminal` of a language of other names; with narrowing on, ``None`` (those
        keys are not generated) where the language has no small regex."""
        if lang in self._too_large:
            return None
        try:
            return self.key_terminal(lang, None, path)
        except Unsupported as e:
            if not self.norm.narrowing:
                raise
            self.norm.narrow(e, "those additional property names are not generated")
            self._too_large.add(lang)
            return None

    def pair(self, key_term: str, ref: Ref) -> list[Item]:
        """``KEY ":" value`` (inlined: no rule of its own, so nothing is reduced before the object ends)."""
        return [key_term, '":"', self.value(ref)]

    # --- objects and arrays (objects.py, arrays.py) ------------------------------------------
    def objects(self, atoms: tuple[ObjAtom, ...], path: str) -> str | None:
        from decoding.grammar.json_schema.objects import object_rule

        return object_rule(self, atoms, path)

    def arrays(self, atoms: tuple[ArrAtom, ...], path: str) -> str | None:
        from decoding.grammar.json_schema.arrays import array_rule

        return array_rule(self, atoms, path)

    # --- output ---------------------------------------------------------------------------------
    def kept_rules(self, root: str) -> dict[str, list[list[Item]]]:
        """The rules reachable from ``root`` that derive a finite text, in the order they are written.

        Raises:
            Unsupported: no value satisfies the schema, or the grammar exceeds the size cap.
        """
        self.finish()
        productive = self._productive()

        def ok(item: Item) -> bool:
            if isinstance(item, Repeat):
                return item.lo == 0 or all(ok(s) for s in item.symbols)
            return item not in self.rules or item in productive

        if root not in productive:
            narrowed = [w for w in self.norm.warnings if "; narrowed: " in w]
            if narrowed:
                raise Unsupported("schema", f"no JSON value is left after narrowing ({narrowed[0]})", "#")
            raise Unsupported("schema", "no JSON value satisfies the schema", "#")
        kept: dict[str, list[list[Item]]] = {}
        todo = [root]
        while todo:
            name = todo.pop()
            if name in kept:
                continue
            alts = []
            for a in self.rules[name]:
                if not all(ok(x) for x in a):
                    continue
                items: list[Item] = []
                for x in a:
                    if isinstance(x, Repeat) and not all(ok(s) for s in x.symbols):
                        continue  # zero repetitions only
                    items.append(x)
                alts.append(items)
            kept[name] = alts
            for a in alts:
                for x in a:
                    for s in x.symbols if isinstance(x, Repeat) else (x,):
                        if s in self.rules and s not in kept:
                            todo.append(s)
        symbols = sum(len(a) + 1 for alts in kept.values() for a in alts)
        if symbols > MAX_GRAMMAR_SYMBOLS:
            raise Unsupported("schema", f"the grammar would have {symbols} symbols (at most {MAX_GRAMMAR_SYMBOLS})", "#")
        return kept

    def _productive(self) -> set[str]:
        """Rules that derive some finite text (a worklist: each alternative waits on the rules it
        needs, a repetition that may be empty needs none)."""
        waiting: dict[str, list[int]] = {}
        need: list[int] = []
        owner: list[str] = []
        ready: list[str] = []
        for name, alts in self.rules.items():
            for a in alts:
                deps = {
                    s
                    for x in a
                    if not (isinstance(x, Repeat) and x.lo == 0)
                    for s in (x.symbols if isinstance(x, Repeat) else (x,))
                    if s in self.rules
                }
                for d in deps:
                    waiting.setdefault(d, []).append(len(need))
                need.append(len(deps))
                owner.append(name)
                if not deps:
                    ready.append(name)
        productive: set[str] = set()
        while ready:
            name = ready.pop()
            if name in productive:
                continue
            productive.add(name)
            for k in waiting.get(name, ()):
                need[k] -= 1
                if need[k] == 0:
                    ready.append(owner[k])
        return productive

    def used_terminals(self, kept: dict[str, list[list[Item]]]) -> list[tuple[str, str]]:
        """``(name, regex)`` of the named terminals ``kept`` uses, in the order they were made."""
        used = {t for alts in kept.values() for a in alts for x in a for t in (x.symbols if isinstance(x, Repeat) else (x,))}
        return [(name, regex) for regex, name in self.terminals.items() if name in used]

    def lark(self, root: str) -> str:
        """The grammar text, without rules that derive no finite text or are unreachable."""
        kept = self.kept_rules(root)
        lines = [f"start: {root}"]
        for name, alts in kept.items():
            body = " | ".join(" ".join(x.text() if isinstance(x, Repeat) else x for x in a) for a in alts)
            lines.append(f"{name}: {body}")
        for name, regex in self.used_terminals(kept):
            lines.append(f"{name}: /{regex}/")
        lines.append(f"WS: /{WS_REGEX}/")
        lines.append("%ignore WS")
        return "\n".join(lines) + "\n"


def explore(start: tuple, successors, keyword: str, path: str) -> None:
    """Visit the product states reachable from ``start`` (``successors(state)`` lists the next
    ones), refusing more than :data:`MAX_PRODUCT_STATES`."""
    seen = {start}
    todo = [start]
    while todo:
        for nxt in successors(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
                if len(seen) > MAX_PRODUCT_STATES:
                    raise Unsupported(keyword, f"the union of alternatives needs more than {MAX_PRODUCT_STATES} states", path)


def fitting(b: GrammarBuilder, alts: list, check, what: str, path: str) -> list:
    """``alts`` if ``check(alts)`` passes; else (narrowing on) the alternatives kept greedily, in
    schema order, while ``check`` passes: a union of fewer alternatives is a sound subset.

    Raises:
        Unsupported: ``check`` failed and narrowing is off, or not even one alternative fits.
    """
    try:
        check(alts)
        return alts
    except Unsupported as e:
        if not b.norm.narrowing:
            raise
        err = e
    kept: list = []
    for a in alts:
        try:
            check([*kept, a])
        except Unsupported:
            continue
        kept.append(a)
    if not kept:
        raise err
    b.norm.narrow(err, f"{len(alts) - len(kept)} of {len(alts)} {what} alternatives left out")
    return kept


def product_moves(
    b: GrammarBuilder, moves: dict[int, tuple[Ref, list[tuple[Ref, object]]]], n: int, keyword: str, path: str
) -> list[tuple[Ref, tuple]]:
    """The moves of a product automaton on one key (or array slot): disjoint value regions.

    ``moves`` maps each alternative still alive to ``(its value ref, [(finer ref, next state)])``
    (the finer refs split its value further, e.g. by ``contains``, and are disjoint). Returns
    ``(value ref, next state per alternative or None)``. Alternatives with the same value ref move
    together; different refs are used as they are when provably disjoint, else split into the
    regions of their Venn diagram (``a and not b``, ...), which needs complements.
    """
    moves = {m: mv for m, mv in moves.items() if mv[1]}  # no finer move left: that alternative dies
    by_shape: dict[object, Ref] = {}  # equal shapes (written twice in the schema) are one group
    groups: dict[Ref, set[int]] = {}
    for m, (ref, _) in moves.items():
        ref = by_shape.setdefault(b.norm.shape(ref), ref)
        groups.setdefault(ref, set()).add(m)
    refs = list(groups)
    regions: list[tuple[Ref, frozenset[int]]] = []
    shapes = [b.norm.shape(r) for r in refs] if len(refs) > 1 else []
    if len(refs) == 1 or all(b.alg.disjoint(shapes[i], shapes[j]) for i in range(len(refs)) for j in range(i + 1, len(refs))):
        regions = [(r, frozenset(groups[r])) for r in refs]
    else:
        if len(refs) > MAX_VENN:
            raise Unsupported(keyword, f"more than {MAX_VENN} overlapping alternatives for one value", path)
        for inside in cartesian((True, False), repeat=len(refs)):
            if not any(inside):
                continue
            ref = TRUE_REF
            members: set[int] = set()
            for r, ins in zip(refs, inside, strict=True):
                ref = ref.also(r) if ins else ref.without(r)
                if ins:
                    members |= groups[r]
            if _empty(b, ref, keyword, path):
                continue
            regions.append((ref, frozenset(members)))
    out = []
    for region, members in regions:
        ms = sorted(members)
        if math.prod(len(moves[m][1]) for m in ms) > MAX_PRODUCT_MOVES:
            raise Unsupported(keyword, f"more than {MAX_PRODUCT_MOVES} combined moves for one value", path)
        for choice in cartesian(*(moves[m][1] for m in ms)):
            ref = region
            for r, _ in choice:
                ref = ref.also(r)
            if len(choice) > 1 or ref != region:
                if ref != region and _empty(b, ref, keyword, path):
                    continue
            nxt: list = [None] * n
            for m, (_, st) in zip(ms, choice, strict=True):
                nxt[m] = st
            out.append((ref, tuple(nxt)))
    return out


def _empty(b: GrammarBuilder, ref: Ref, keyword: str, path: str) -> bool:
    try:
        return b.alg.is_empty(b.norm.shape(ref))
    except Unsupported as e:
        raise Unsupported(
            keyword,
            f"alternatives give overlapping, different schemas to the same value and their difference cannot be expressed ({e.reason})",
            path,
        ) from None
