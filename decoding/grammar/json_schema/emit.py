"""Shapes -> lark rules: one rule per distinct value shape, objects and arrays as small automata.

Every set of terminals the parser may meet at one point is disjoint (one terminal per string
union, per number union, per property name, per region of other names), so the contextual lexer
never has to guess; alternatives of a union start with different terminals or are merged.

* An object is a walk through its listed properties in schema order (each optional one may be
  skipped) with keys outside them allowed anywhere in between (rules ``S`` and ``R`` below, linear
  in the number of properties). Counts (``minProperties``/``maxProperties``) add a counter.
* An array is its ``prefixItems`` chain, then ``("," item) ~ a..b`` (lark's bounded repetition,
  logarithmic in ``b``: ``maxItems: 1000`` does not nest).
* A union of several object (or array) alternatives is their product automaton: all alternatives
  advance together on each key, and where their values for that key differ the value is split
  into disjoint regions (``a and b``, ``a and not b``, ...), so the parser learns from the value
  which alternatives survive. This is how overlapping ``anyOf``/``oneOf``/``enum`` alternatives are
  factored instead of refused.

Rules that can derive no finite text are removed at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product as cartesian

from decoding.grammar.json_schema import automaton as fa
from decoding.grammar.json_schema.encode import json_string_regex, plain_regex
from decoding.grammar.json_schema.keys import KeyLang
from decoding.grammar.json_schema.keywords import Normalizer
from decoding.grammar.json_schema.regex_ast import NOTHING, alt, literal
from decoding.grammar.json_schema.shapes import TRUE_REF, ArrAtom, ObjAtom, Ref, Shape, Unsupported
from decoding.grammar.json_schema.strings import StrAtom

MAX_PRODUCT_STATES = 4000
MAX_REGION_TREES = 6
STRING_ANY = r"\x22(?:[^\x22\\\x00-\x1f]|\\[\x22\\\/bfnrt]|\\u[0-9a-fA-F]{4})*\x22"  # lark-safe quotes


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


@dataclass
class _ObjSpec:
    """One object alternative as an automaton: listed keys in order, regions of other keys."""

    named: list[tuple[str, Ref, bool]]
    regions: list[tuple[KeyLang, Ref]]
    min_props: int
    max_props: int | None
    taken: frozenset[str]  # names with their own entry (listed or forbidden)
    dead: list[KeyLang]  # the other keys the object may not have

    @property
    def cap(self) -> int:
        return self.max_props if self.max_props is not None else self.min_props

    def start(self) -> tuple[int, int]:
        return (0, 0)

    def bump(self, c: int) -> int | None:
        if self.max_props is not None:
            return c + 1 if c < self.max_props else None
        return min(c + 1, self.cap)

    def accepts(self, state: tuple[int, int]) -> bool:
        i, c = state
        return c >= self.min_props and not any(req for _, _, req in self.named[i:])

    def edges(self, state: tuple[int, int]) -> list[tuple[tuple, Ref, tuple[int, int]]]:
        """Explicit moves: ``(key class, value ref, next state)``."""
        i, c = state
        c2 = self.bump(c)
        if c2 is None:
            return []
        out = []
        for j in range(i, len(self.named)):
            key, ref, req = self.named[j]
            out.append((("name", key), ref, (j + 1, c2)))
            if req:
                break
        for r, (_, ref) in enumerate(self.regions):
            out.append((("region", r), ref, (i, c2)))
        return out


class GrammarBuilder:
    """Collects rules and terminals for one schema (see the module docstring)."""

    def __init__(self, norm: Normalizer) -> None:
        self.norm = norm
        self.alg = norm.alg
        self.rules: dict[str, list[list[Item]]] = {}
        self.terminals: dict[str, str] = {}  # regex -> name
        self._names: set[str] = set()
        self._shape_rules: dict[Shape, str] = {}
        self._memo: dict[tuple, str] = {}
        self._specs: dict[ObjAtom, _ObjSpec | None] = {}
        self._pending: list[tuple[str, object]] = []

    # --- names ----------------------------------------------------------------------------------
    def _fresh(self, hint: str) -> str:
        n = len(self._names)
        name = f"{hint}_{n}"
        self._names.add(name)
        return name

    def terminal(self, regex: str, hint: str) -> str:
        name = self.terminals.get(regex)
        if name is None:
            name = self.terminals[regex] = f"{hint}_{len(self.terminals)}".upper()
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

    def _numbers(self, shape: Shape, path: str) -> list[list[Item]]:
        trees = []
        for atom in shape.nums:
            try:
                trees.append(atom.tree())
            except fa.TooLarge as e:
                raise Unsupported("multipleOf", str(e), path) from None
        tree = alt(*trees)
        return [] if tree == NOTHING else [[self.terminal(plain_regex(tree), "NUMBER")]]

    def _strings(self, atoms: tuple[StrAtom, ...], path: str) -> list[list[Item]]:
        if atoms == (StrAtom(),):
            return [[self.terminal(STRING_ANY, "STRING")]]
        try:
            tree = alt(*(a.tree() for a in atoms))
        except fa.TooLarge as e:
            raise Unsupported("pattern", f"the string constraints have no regular expression within the size caps ({e})", path) from None
        return [] if tree == NOTHING else [[self.terminal(json_string_regex(tree), "STRING")]]

    def key_terminal(self, lang: KeyLang | None, name: str | None = None, path: str = "#") -> str:
        """The terminal of one listed name, or of a language of other names."""
        if name is not None:
            return self.terminal(json_string_regex(literal(name)), "KEY")
        assert lang is not None
        if lang == KeyLang():
            return self.terminal(STRING_ANY, "KEY")
        try:
            tree = lang.tree()
        except fa.TooLarge as e:
            raise Unsupported("patternProperties", f"the names of additional properties have no small regex ({e})", path) from None
        return self.terminal(json_string_regex(tree, unicode_escapes=False), "KEY")

    def pair(self, key_term: str, ref: Ref) -> list[Item]:
        """``KEY ":" value`` (inlined: no rule of its own, so nothing is reduced before the object ends)."""
        return [key_term, '":"', self.value(ref)]

    # --- objects --------------------------------------------------------------------------------
    def spec(self, atom: ObjAtom, path: str) -> _ObjSpec | None:
        """The automaton of one object alternative (``None`` if it admits no object)."""
        if atom in self._specs:
            return self._specs[atom]
        spec = self._build_spec(atom, path)
        self._specs[atom] = spec
        return spec

    def _build_spec(self, atom: ObjAtom, path: str) -> _ObjSpec | None:
        named = []
        taken = set()
        required = set(atom.required)
        for k in atom.names():
            taken.add(k)
            ref = atom.key_ref(k)
            if not atom.key_allowed(k) or self.alg.ref_is_empty(ref):
                if k in required:
                    return None
                continue
            named.append((k, ref, k in required))
        regions, dead = self._regions(atom, frozenset(taken), path)
        if atom.max_props is not None and (atom.min_props > atom.max_props or len(required) > atom.max_props):
            return None
        return _ObjSpec(named, regions, atom.min_props, atom.max_props, frozenset(taken), dead)

    def _regions(self, atom: ObjAtom, taken: frozenset[str], path: str) -> tuple[list[tuple[KeyLang, Ref]], list[KeyLang]]:
        """The keys without their own entry, split into disjoint languages: ``(live with value ref, dead)``."""
        trees = list(dict.fromkeys([t for t, _ in atom.patterns] + [t for ts, _, _ in atom.additional for t in ts]))
        if len(trees) > MAX_REGION_TREES:
            raise Unsupported("patternProperties", f"more than {MAX_REGION_TREES} patterns on one object", path)
        live: dict[Ref, list[KeyLang]] = {}
        dead: list[KeyLang] = []
        for j, k in enumerate(atom.key_trees):  # keys that propertyNames rejects
            dead.append(KeyLang(frozenset(atom.key_trees[:j]), frozenset({k}), taken))
        for inside in cartesian((True, False), repeat=len(trees)):
            ref = TRUE_REF
            for t, r in atom.patterns:
                if inside[trees.index(t)]:
                    ref = ref.also(r)
            for ts, _, r in atom.additional:
                if not any(inside[trees.index(t)] for t in ts):
                    ref = ref.also(r)
            lang = KeyLang(
                frozenset(t for t, i in zip(trees, inside, strict=True) if i) | frozenset(atom.key_trees),
                frozenset(t for t, i in zip(trees, inside, strict=True) if not i),
                taken,
            )
            if lang.is_empty():
                continue
            if self.alg.ref_is_empty(ref):
                dead.append(lang)
            else:
                live.setdefault(ref, []).append(lang)
        regions = []
        for ref, langs in live.items():
            for lang in langs:  # one terminal each (they are disjoint)
                regions.append((lang, ref))
        return regions, dead

    def objects(self, atoms: tuple[ObjAtom, ...], path: str) -> str | None:
        specs = [s for s in (self.spec(a, path) for a in atoms) if s is not None]
        if not specs:
            return None
        if len(specs) == 1:
            return self._single_object(specs[0])
        key = ("objects", tuple(id(s) for s in specs))
        if key not in self._memo:
            self._memo[key] = _Product(self, specs, path).rule()
        return self._memo[key]

    def _single_object(self, spec: _ObjSpec) -> str:
        key = ("obj", id(spec))
        if key in self._memo:
            return self._memo[key]
        start = spec.start()
        alts: list[list[Item]] = []
        if spec.accepts(start):
            alts.append(['"{"', '"}"'])
        alts.append(['"{"', self.obj_first(spec, start), '"}"'])
        return self._rule(key, "object", lambda _: alts)

    def _region_term(self, spec: _ObjSpec, r: int) -> str:
        key = ("regionterm", id(spec), r)
        if key not in self._memo:
            self._memo[key] = self.key_terminal(spec.regions[r][0])
        return self._memo[key]

    def obj_rest(self, spec: _ObjSpec, state: tuple[int, int]) -> str:
        """``R``: members after the first (each with its comma), ending where the object may close."""

        def build(_name: str) -> list[list[Item]]:
            i, c = state
            alts: list[list[Item]] = []
            if spec.accepts(state):
                alts.append([])
            c2 = spec.bump(c)
            if c2 is not None:
                if i < len(spec.named):
                    alts.append(['","', self.obj_named(spec, state)])
                for r, (_, ref) in enumerate(spec.regions):
                    alts.append(['","', *self.pair(self._region_term(spec, r), ref), self.obj_rest(spec, (i, c2))])
            return alts

        return self._rule(("R", id(spec), state), "members", build)

    def obj_first(self, spec: _ObjSpec, state: tuple[int, int]) -> str:
        """``F``: a non-empty member list (first member without comma)."""

        def build(_name: str) -> list[list[Item]]:
            i, c = state
            alts: list[list[Item]] = []
            c2 = spec.bump(c)
            if c2 is not None:
                if i < len(spec.named):
                    alts.append([self.obj_named(spec, state)])
                for r, (_, ref) in enumerate(spec.regions):
                    alts.append([*self.pair(self._region_term(spec, r), ref), self.obj_rest(spec, (i, c2))])
            return alts

        return self._rule(("F", id(spec), state), "members", build)

    def obj_named(self, spec: _ObjSpec, state: tuple[int, int]) -> str:
        """``S``: one listed key from position ``i`` on (optional ones may be skipped), then ``R``."""

        def build(_name: str) -> list[list[Item]]:
            i, c = state
            key, ref, req = spec.named[i]
            c2 = spec.bump(c)
            alts: list[list[Item]] = [[*self.pair(self.key_terminal(None, key), ref), self.obj_rest(spec, (i + 1, c2))]]
            if not req and i + 1 < len(spec.named):
                alts.append([self.obj_named(spec, (i + 1, c))])
            return alts

        return self._rule(("S", id(spec), state), "member", build)

    # --- arrays ---------------------------------------------------------------------------------
    def arrays(self, atoms: tuple[ArrAtom, ...], path: str) -> str | None:
        atoms = tuple(a for a in (self._trim_array(a, path) for a in atoms) if a is not None)
        if not atoms:
            return None
        if len(atoms) == 1:
            return self._single_array(atoms[0], path)
        return _ArrayProduct(self, list(atoms), path).rule()

    def _trim_array(self, a: ArrAtom, path: str) -> ArrAtom | None:
        """The same arrays with ``max_items`` lowered to the first position no item can fill."""
        hi = a.max_items
        for i in range(len(a.prefix) + 1):
            if hi is not None and i >= hi:
                break
            if self.alg.ref_is_empty(a.at(i)):
                hi = i if hi is None else min(hi, i)
                break
        if a.unique and (hi is None or hi > 1):
            raise Unsupported("uniqueItems", "item uniqueness of arrays that may hold two or more items cannot be expressed", path)
        if hi is not None and a.min_items > hi:
            return None
        return ArrAtom(a.prefix, a.items, a.min_items, hi, a.contains, False)

    def _single_array(self, a: ArrAtom, path: str) -> str:
        if a.contains:
            return _ArrayProduct(self, [a], path).rule()

        def build(_name: str) -> list[list[Item]]:
            alts: list[list[Item]] = []
            if a.min_items == 0:
                alts.append(['"["', '"]"'])
            if a.max_items is None or a.max_items >= 1:
                alts.append(['"["', self.value(a.at(0)), self.array_tail(a, 1), '"]"'])
            return alts

        return self._rule(("array", a), "array", build)

    def array_tail(self, a: ArrAtom, i: int) -> str:
        """Items after the first ``i`` (each with its comma)."""

        def build(_name: str) -> list[list[Item]]:
            lo, hi, k = a.min_items, a.max_items, len(a.prefix)
            if i < k:
                alts: list[list[Item]] = []
                if i >= lo:
                    alts.append([])
                if hi is None or i < hi:
                    alts.append(['","', self.value(a.at(i)), self.array_tail(a, i + 1)])
                return alts
            need = max(0, lo - i)
            more = None if hi is None else hi - i
            if more is not None and more <= 0:
                return [[]]
            return [[Repeat(('","', self.value(a.items)), need, more)]]

        return self._rule(("tail", a, i), "items", build)

    # --- output ---------------------------------------------------------------------------------
    def lark(self, root: str) -> str:
        """The grammar text, without rules that derive no finite text or are unreachable."""
        self.finish()
        productive: set[str] = set()
        changed = True

        def ok(item: Item) -> bool:
            if isinstance(item, Repeat):
                return item.lo == 0 or all(ok(s) for s in item.symbols)
            return item not in self.rules or item in productive

        while changed:
            changed = False
            for name, alts in self.rules.items():
                if name not in productive and any(all(ok(x) for x in a) for a in alts):
                    productive.add(name)
                    changed = True
        if root not in productive:
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
        lines = [f"start: {root}"]
        for name, alts in kept.items():
            body = " | ".join(" ".join(x.text() if isinstance(x, Repeat) else x for x in a) for a in alts)
            lines.append(f"{name}: {body}")
        used = {t for alts in kept.values() for a in alts for x in a for t in (x.symbols if isinstance(x, Repeat) else (x,))}
        for regex, name in self.terminals.items():
            if name in used:
                lines.append(f"{name}: /{regex}/")
        lines.append(r"WS: /[ \t\n\r]+/")
        lines.append("%ignore WS")
        return "\n".join(lines) + "\n"


def _split_values(b: GrammarBuilder, moves: dict[int, tuple[Ref, tuple]], keyword: str, path: str) -> list[tuple[Ref, frozenset[int]]]:
    """Disjoint value regions for one key (or array slot): ``(ref, alternatives that accept the value)``.

    ``moves`` maps each alternative still alive to ``(its value ref, its next state)``. Identical
    refs are grouped; distinct ones are used as they are when provably disjoint, else split into
    the regions of their Venn diagram (``a and not b``, ...), which needs complements.
    """
    groups: dict[Ref, set[int]] = {}
    for m, (ref, _) in moves.items():
        groups.setdefault(ref, set()).add(m)
    refs = list(groups)
    if len(refs) == 1:
        return [(refs[0], frozenset(groups[refs[0]]))]
    shapes = [b.norm.shape(r) for r in refs]
    if all(b.alg.disjoint(shapes[i], shapes[j]) for i in range(len(refs)) for j in range(i + 1, len(refs))):
        return [(r, frozenset(groups[r])) for r in refs]
    out = []
    for inside in cartesian((True, False), repeat=len(refs)):
        if not any(inside):
            continue
        ref = TRUE_REF
        members: set[int] = set()
        for r, ins in zip(refs, inside, strict=True):
            if ins:
                ref = ref.also(r)
                members |= groups[r]
            else:
                ref = ref.without(r)
        try:
            if b.alg.is_empty(b.norm.shape(ref)):
                continue
        except Unsupported as e:
            raise Unsupported(
                keyword,
                "alternatives give overlapping, different schemas to the same value and their difference "
                f"cannot be expressed ({e.reason})",
                path,
            ) from None
        out.append((ref, frozenset(members)))
    return out


class _Product:
    """Union of several object alternatives as one automaton (see the module docstring)."""

    def __init__(self, b: GrammarBuilder, specs: list[_ObjSpec], path: str) -> None:
        self.b, self.specs, self.path = b, specs, path
        self.names = list(dict.fromkeys(k for s in specs for k in [n for n, _, _ in s.named] + sorted(s.taken)))
        self.classes = self._key_classes()
        self._edges: dict[tuple, list] = {}

    def _key_classes(self) -> list[tuple[str | None, KeyLang | None, tuple]]:
        """``(name or None, language or None, per-spec class)``; a per-spec class is ``("name", k)``,
        ``("region", r)`` or ``None`` (the spec rejects the key)."""
        out: list[tuple[str | None, KeyLang | None, tuple]] = []
        for k in self.names:
            per = []
            for s in self.specs:
                if any(n == k for n, _, _ in s.named):
                    per.append(("name", k))
                elif k in s.taken:
                    per.append(None)
                else:
                    r = next((r for r, (lang, _) in enumerate(s.regions) if lang.contains(k)), None)
                    per.append(None if r is None else ("region", r))
            out.append((k, None, tuple(per)))
        names = frozenset(self.names)
        options = [[(("region", r), lang) for r, (lang, _) in enumerate(s.regions)] + [(None, lang) for lang in s.dead] for s in self.specs]
        for combo in cartesian(*options):
            if all(c is None for c, _ in combo):
                continue
            lang = KeyLang(names=names)
            for _, part in combo:
                lang = lang.meet(part)
            if lang.is_empty():
                continue
            out.append((None, lang, tuple(c for c, _ in combo)))
        return out

    def accepts(self, state: tuple) -> bool:
        return any(st is not None and s.accepts(st) for s, st in zip(self.specs, state, strict=True))

    def edges(self, state: tuple) -> list[tuple[str, Ref, tuple]]:
        """``(key terminal, value ref, next state)`` with disjoint keys and, per key, disjoint values."""
        out = self._edges.get(state)
        if out is not None:
            return out
        out = []
        for name, lang, per in self.classes:
            moves: dict[int, tuple[Ref, tuple[int, int]]] = {}
            for m, (s, st) in enumerate(zip(self.specs, state, strict=True)):
                if st is None or per[m] is None:
                    continue
                for cls, ref, nxt in s.edges(st):
                    if cls == per[m]:
                        moves[m] = (ref, nxt)
            if not moves:
                continue
            term = self.b.key_terminal(lang, name, self.path)
            for ref, members in _split_values(self.b, moves, "anyOf", self.path):
                nxt = tuple(moves[m][1] if m in members else None for m in range(len(self.specs)))
                out.append((term, ref, nxt))
        self._edges[state] = out
        return out

    def _alive(self, state: tuple) -> list[int]:
        return [m for m, st in enumerate(state) if st is not None]

    def rule(self) -> str:
        b = self.b
        start = tuple(s.start() for s in self.specs)
        seen = {start}
        todo = [start]
        while todo:
            st = todo.pop()
            if len(self._alive(st)) == 1:
                continue
            for _, _, nxt in self.edges(st):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
                    if len(seen) > MAX_PRODUCT_STATES:
                        raise Unsupported("anyOf", f"the union of object alternatives needs more than {MAX_PRODUCT_STATES} states", self.path)
        alts: list[list[Item]] = []
        if self.accepts(start):
            alts.append(['"{"', '"}"'])
        alts.append(['"{"', self.first(start), '"}"'])
        return b._rule(("objunion", id(self), start), "objects", lambda _: alts)

    def first(self, state: tuple) -> str:
        alive = self._alive(state)
        if len(alive) == 1:
            m = alive[0]
            return self.b.obj_first(self.specs[m], state[m])

        def build(_name: str) -> list[list[Item]]:
            return [[*self.b.pair(t, ref), self.rest(nxt)] for t, ref, nxt in self.edges(state)]

        return self.b._rule(("PF", id(self), state), "members", build)

    def rest(self, state: tuple) -> str:
        alive = self._alive(state)
        if len(alive) == 1:
            m = alive[0]
            return self.b.obj_rest(self.specs[m], state[m])

        def build(_name: str) -> list[list[Item]]:
            alts: list[list[Item]] = [[]] if self.accepts(state) else []
            alts.extend(['","', *self.b.pair(t, ref), self.rest(nxt)] for t, ref, nxt in self.edges(state))
            return alts

        return self.b._rule(("PR", id(self), state), "members", build)


class _ArrayProduct:
    """Arrays whose items decide between alternatives (several atoms, or ``contains``).

    A state is, per alternative, its position (saturating once nothing depends on it) and how many
    items matched its ``contains`` schema so far (saturating); items are split into disjoint regions.
    """

    def __init__(self, b: GrammarBuilder, atoms: list[ArrAtom], path: str) -> None:
        self.b, self.atoms, self.path = b, atoms, path
        for a in atoms:
            if len(a.contains) > 1:
                raise Unsupported("contains", "several contains constraints on one array", path)
        self._edges: dict[tuple, list] = {}

    def _sat(self, a: ArrAtom) -> int:
        return max(len(a.prefix), a.min_items) if a.max_items is None else a.max_items

    def _count_cap(self, a: ArrAtom) -> int:
        if not a.contains:
            return 0
        _, lo, hi = a.contains[0]
        return (hi + 1) if hi is not None else lo

    def accepts(self, state: tuple) -> bool:
        for a, st in zip(self.atoms, state, strict=True):
            if st is None:
                continue
            i, n = st
            ok = i >= a.min_items and (a.max_items is None or i <= a.max_items)
            if a.contains:
                _, lo, hi = a.contains[0]
                ok = ok and n >= lo and (hi is None or n <= hi)
            if ok:
                return True
        return False

    def _moves(self, m: int, st: tuple[int, int]) -> tuple[Ref, list[tuple[Ref | None, tuple[int, int]]]] | None:
        """``(item ref, [(contains split or None, next state)])`` of alternative ``m``, or ``None`` at its end."""
        a = self.atoms[m]
        i, n = st
        if a.max_items is not None and i >= a.max_items:
            return None
        nxt_i = min(i + 1, self._sat(a)) if a.max_items is None else i + 1
        if not a.contains:
            return a.at(i), [(None, (nxt_i, 0))]
        c, _, hi = a.contains[0]
        out: list[tuple[Ref | None, tuple[int, int]]] = [(TRUE_REF.without(c), (nxt_i, n))]
        if hi is None or n + 1 <= hi:
            out.insert(0, (c, (nxt_i, min(n + 1, self._count_cap(a)))))
        return a.at(i), out

    def edges(self, state: tuple) -> list[tuple[Ref, tuple]]:
        out = self._edges.get(state)
        if out is not None:
            return out
        moves: dict[int, tuple[Ref, tuple]] = {}
        splits: dict[int, list] = {}
        for m, st in enumerate(state):
            mv = self._moves(m, st) if st is not None else None
            if mv is not None:
                moves[m] = (mv[0], st)
                splits[m] = mv[1]
        out = []
        alg, norm = self.b.alg, self.b.norm
        kw = "contains" if any(a.contains for a in self.atoms) else "anyOf"
        for region, members in _split_values(self.b, moves, kw, self.path):
            ms = sorted(members)
            for choice in cartesian(*(splits[m] for m in ms)):
                ref = region
                for c, _ in choice:
                    if c is not None:
                        ref = ref.also(c)
                if len(choice) > 1 or any(c is not None for c, _ in choice):
                    try:
                        if alg.is_empty(norm.shape(ref)):
                            continue
                    except Unsupported as e:
                        raise Unsupported(kw, f"array items would need a schema difference that cannot be expressed ({e.reason})", self.path) from None
                nxt = [None] * len(self.atoms)
                for m, (_, st2) in zip(ms, choice, strict=True):
                    nxt[m] = st2
                out.append((ref, tuple(nxt)))
        self._edges[state] = out
        return out

    def rule(self) -> str:
        start = tuple((0, 0) for _ in self.atoms)
        seen = {start}
        todo = [start]
        while todo:
            st = todo.pop()
            for _, nxt in self.edges(st):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
                    if len(seen) > MAX_PRODUCT_STATES:
                        raise Unsupported("anyOf", f"the array alternatives need more than {MAX_PRODUCT_STATES} states", self.path)
        alts: list[list[Item]] = []
        if self.accepts(start):
            alts.append(['"["', '"]"'])
        alts.extend(['"["', self.b.value(ref), self.rest(nxt), '"]"'] for ref, nxt in self.edges(start))
        return self.b._rule(("arrunion", id(self)), "array", lambda _: alts)

    def rest(self, state: tuple) -> str:
        def build(_name: str) -> list[list[Item]]:
            alts: list[list[Item]] = [[]] if self.accepts(state) else []
            alts.extend(['","', self.b.value(ref), self.rest(nxt)] for ref, nxt in self.edges(state))
            return alts

        return self.b._rule(("AR", id(self), state), "items", build)
