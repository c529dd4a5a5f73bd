"""Object rules: one alternative as a small automaton, several as their product.

A state of one alternative is ``(i, c, f)``: the listed properties before index ``i`` are
behind us (they come in schema order; an optional one may be skipped; with at most
:data:`ANY_ORDER_MAX` listed keys, ``i`` is instead the set of those used and they come in any
order), ``c`` counts members (only
when ``minProperties``/``maxProperties`` need it, saturating), ``f`` is the set of ``exists``
clauses already satisfied. Keys outside the listed ones may come anywhere, any number of times,
each in its region (a language of names with one value schema). Rules per state:

* ``S(i, c, f)``: the property ``i`` (or, if optional, a later one) and then ``R``;
* ``R(i, c, f)``: nothing (if the object may close here), or ``"," S`` or ``"," other-key R``;
* ``F(i, c, f)``: like ``R`` for the first member (no comma).

This is linear in the number of properties and never reduces before the closing brace (right
recursion), so unions of alternatives sharing a prefix stay LALR(1). A union is a product
automaton whose states hold one state (or ``None``) per alternative; once a single alternative is
alive its own rules take over.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product as cartesian
from typing import TYPE_CHECKING

from decoding.grammar.json_schema.emit import Item, explore, fitting, product_moves
from decoding.grammar.json_schema.keys import KeyLang
from decoding.grammar.json_schema.shapes import TRUE_REF, ObjAtom, Ref, Unsupported, object_regions

if TYPE_CHECKING:
    from decoding.grammar.json_schema.emit import GrammarBuilder

State = tuple[int, int, int]
ANY_ORDER_MAX = 3  # objects with at most this many listed keys take them in any order


@dataclass
class ObjSpec:
    """One object alternative as an automaton (see the module docstring)."""

    named: list[tuple[str, Ref, bool, tuple[bool, ...]]]  # key, value ref, required, exists membership
    regions: list[tuple[KeyLang, Ref, tuple[bool, ...]]]  # other keys that are allowed
    dead: list[KeyLang]  # other keys that are not
    exists: list[Ref]  # value refs of the exists clauses
    min_props: int
    max_props: int | None
    taken: frozenset[str]

    @property
    def any_order(self) -> bool:
        """Few listed keys: ``i`` is then the set (bit mask) of those used, in any order."""
        return len(self.named) <= ANY_ORDER_MAX

    def start(self) -> State:
        return (0, 0, 0)

    def bump(self, c: int) -> int | None:
        if self.max_props is not None:
            return c + 1 if c < self.max_props else None
        return min(c + 1, self.min_props)

    def accepts(self, state: State) -> bool:
        i, c, f = state
        full = (1 << len(self.exists)) - 1
        if self.any_order:
            left = any(req and not i >> j & 1 for j, (_, _, req, _) in enumerate(self.named))
        else:
            left = any(req for _, _, req, _ in self.named[i:])
        return c >= self.min_props and f == full and not left

    def splits(self, ref: Ref, member: tuple[bool, ...], f: int) -> list[tuple[Ref, int]]:
        """``(value ref, new flags)``: the value decides which open ``exists`` clauses it satisfies."""
        open_ = [j for j, m in enumerate(member) if m and not f >> j & 1]
        out = []
        for inside in cartesian((True, False), repeat=len(open_)):
            r, f2 = ref, f
            for j, ins in zip(open_, inside, strict=True):
                x = self.exists[j]
                if ins:
                    r, f2 = r.also(x), f2 | 1 << j
                elif x == TRUE_REF:
                    r = None  # type: ignore[assignment]
                    break
                else:
                    r = r.without(x)
            if r is not None:
                out.append((r, f2))
        return out

    def moves(self, state: State, cls: tuple | None) -> tuple[Ref, list[tuple[Ref, State]]] | None:
        """``(value ref, [(finer ref, next state)])`` on a key of class ``cls``, or ``None``."""
        i, c, f = state
        c2 = self.bump(c)
        if c2 is None or cls is None:
            return None
        if cls[0] == "name" and self.any_order:
            j = next(j for j, n in enumerate(self.named) if n[0] == cls[1])
            if i >> j & 1:
                return None
            _, ref, _, member = self.named[j]
            return ref, [(r, (i | 1 << j, c2, f2)) for r, f2 in self.splits(ref, member, f)]
        if cls[0] == "name":
            for j in range(i, len(self.named)):
                key, ref, req, member = self.named[j]
                if key == cls[1]:
                    return ref, [(r, (j + 1, c2, f2)) for r, f2 in self.splits(ref, member, f)]
                if req:
                    return None
            return None
        _, ref, member = self.regions[cls[1]]
        return ref, [(r, (i, c2, f2)) for r, f2 in self.splits(ref, member, f)]


def build_spec(b: GrammarBuilder, atom: ObjAtom, path: str) -> ObjSpec | None:
    """The automaton of one object alternative (``None`` if it admits no object)."""
    if atom in b.specs:
        return b.specs[atom]  # type: ignore[return-value]
    b.specs[atom] = spec = _build(b, atom, path)
    return spec


def _build(b: GrammarBuilder, atom: ObjAtom, path: str) -> ObjSpec | None:
    alg = b.alg
    required = set(atom.required)
    if atom.max_props is not None and (atom.min_props > atom.max_props or len(required) > atom.max_props):
        return None
    names = atom.names()
    named = []
    for k in names:
        ref = atom.key_ref(k)
        if alg.ref_is_empty(ref):
            if k in required:
                return None
            continue
        named.append((k, ref, k in required, tuple(lang.contains(k) for lang, _ in atom.exists)))
    try:
        parts = object_regions(atom, frozenset(names))
    except Unsupported as e:
        raise Unsupported(e.keyword, e.reason, path) from None
    regions, dead = [], []
    for lang, ref, member in parts:
        if alg.ref_is_empty(ref):
            dead.append(lang)
        else:
            regions.append((lang, ref, member))
    exists = [r for _, r in atom.exists]
    if any(alg.ref_is_empty(r) for r in exists):
        return None
    return ObjSpec(named, regions, dead, exists, atom.min_props, atom.max_props, frozenset(names))


def object_rule(b: GrammarBuilder, atoms: tuple[ObjAtom, ...], path: str) -> str | None:
    """The rule of a union of object alternatives (``None`` if none admits an object).

    With narrowing on, alternatives that do not fit (an automaton of their own or the product
    beyond the caps) are left out (:func:`~.emit.fitting`).
    """
    specs = []
    for a in atoms:
        try:
            spec = build_spec(b, a, path)
        except Unsupported as e:
            if not b.norm.narrowing or len(atoms) == 1:
                raise
            b.norm.narrow(e, "that object alternative is left out")
            continue
        if spec is not None:
            specs.append(spec)
    if not specs:
        return None
    if len(specs) == 1:
        return single_object(b, specs[0])
    key = ("objects", tuple(id(s) for s in specs))
    if key not in b._memo:
        kept = fitting(b, specs, lambda ss: ObjectProduct(b, ss, path).check(), "object", path)
        b._memo[key] = single_object(b, kept[0]) if len(kept) == 1 else ObjectProduct(b, kept, path).rule()
    return b._memo[key]


def single_object(b: GrammarBuilder, spec: ObjSpec) -> str:
    start = spec.start()
    alts: list[list[Item]] = []
    if spec.accepts(start):
        alts.append(['"{"', '"}"'])
    alts.append(['"{"', first(b, spec, start), '"}"'])
    return b._rule(("obj", id(spec)), "object", lambda _: alts)


def _region_term(b: GrammarBuilder, spec: ObjSpec, r: int) -> str | None:
    key = ("regionterm", id(spec), r)
    if key not in b._memo:
        b._memo[key] = b.region_terminal(spec.regions[r][0])  # type: ignore[assignment]
    return b._memo[key]


def _other_members(b: GrammarBuilder, spec: ObjSpec, state: State, comma: bool) -> list[list[Item]]:
    i, c, f = state
    c2 = spec.bump(c)
    if c2 is None:
        return []
    alts = []
    if spec.any_order:  # every listed key not used yet
        for j, (key, ref, _, member) in enumerate(spec.named):
            if not i >> j & 1:
                head = ['","'] if comma else []
                for ref2, f2 in spec.splits(ref, member, f):
                    alts.append([*head, *b.pair(b.key_terminal(None, key), ref2), rest(b, spec, (i | 1 << j, c2, f2))])
    for r, (_, ref, member) in enumerate(spec.regions):
        term = _region_term(b, spec, r)
        if term is None:
            continue
        for ref2, f2 in spec.splits(ref, member, f):
            head = ['","'] if comma else []
            alts.append([*head, *b.pair(term, ref2), rest(b, spec, (i, c2, f2))])
    return alts


def rest(b: GrammarBuilder, spec: ObjSpec, state: State) -> str:
    """``R``: members after the first (each with its comma), ending where the object may close."""

    def build(_name: str) -> list[list[Item]]:
        i, c, _ = state
        alts: list[list[Item]] = [[]] if spec.accepts(state) else []
        if spec.bump(c) is not None and not spec.any_order and i < len(spec.named):
            alts.append(['","', named(b, spec, state)])
        return alts + _other_members(b, spec, state, comma=True)

    return b._rule(("R", id(spec), state), "members", build)


def first(b: GrammarBuilder, spec: ObjSpec, state: State) -> str:
    """``F``: a non-empty member list (first member without comma)."""

    def build(_name: str) -> list[list[Item]]:
        i, c, _ = state
        alts: list[list[Item]] = []
        if spec.bump(c) is not None and not spec.any_order and i < len(spec.named):
            alts.append([named(b, spec, state)])
        return alts + _other_members(b, spec, state, comma=False)

    return b._rule(("F", id(spec), state), "members", build)


def named(b: GrammarBuilder, spec: ObjSpec, state: State) -> str:
    """``S``: one listed key from position ``i`` on (optional ones may be skipped), then ``R``."""

    def build(_name: str) -> list[list[Item]]:
        i, c, f = state
        key, ref, req, member = spec.named[i]
        c2 = spec.bump(c)
        term = b.key_terminal(None, key)
        alts: list[list[Item]] = [[*b.pair(term, r), rest(b, spec, (i + 1, c2, f2))] for r, f2 in spec.splits(ref, member, f)]
        if not req and i + 1 < len(spec.named):
            alts.append([named(b, spec, (i + 1, c, f))])
        return alts

    return b._rule(("S", id(spec), state), "member", build)


class ObjectProduct:
    """A union of object alternatives as one automaton (see the module docstring)."""

    def __init__(self, b: GrammarBuilder, specs: list[ObjSpec], path: str) -> None:
        self.b, self.specs, self.path = b, specs, path
        self.names = list(dict.fromkeys(k for s in specs for k in [n for n, _, _, _ in s.named] + sorted(s.taken)))
        self.classes = self._key_classes()
        self._edges: dict[tuple, list] = {}

    def _key_classes(self) -> list[tuple[str | None, KeyLang | None, tuple]]:
        """``(name or None, language or None, per-alternative class)``; a per-alternative class
        is ``("name", k)``, ``("region", r)`` or ``None`` (the alternative rejects the key)."""
        out: list[tuple[str | None, KeyLang | None, tuple]] = []
        for k in self.names:
            per: list[tuple | None] = []
            for s in self.specs:
                if any(n == k for n, _, _, _ in s.named):
                    per.append(("name", k))
                elif k in s.taken:
                    per.append(None)
                else:
                    r = next((r for r, (lang, _, _) in enumerate(s.regions) if lang.contains(k)), None)
                    per.append(None if r is None else ("region", r))
            out.append((k, None, tuple(per)))
        names = frozenset(self.names)
        options = [
            [(("region", r), lang) for r, (lang, _, _) in enumerate(s.regions)] + [(None, lang) for lang in s.dead]
            for s in self.specs
        ]
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
        """``(key terminal, value ref, next state)``: disjoint keys and, per key, disjoint values."""
        out = self._edges.get(state)
        if out is not None:
            return out
        out = []
        for name, lang, per in self.classes:
            moves = {}
            for m, (s, st) in enumerate(zip(self.specs, state, strict=True)):
                mv = s.moves(st, per[m]) if st is not None else None
                if mv is not None:
                    moves[m] = mv
            if not moves:
                continue
            term = self.b.key_terminal(None, name) if name is not None else self.b.region_terminal(lang, self.path)  # type: ignore[arg-type]
            if term is None:
                continue
            for ref, nxt in product_moves(self.b, moves, len(self.specs), "anyOf", self.path):
                out.append((term, ref, nxt))
        self._edges[state] = out
        return out

    def _alive(self, state: tuple) -> list[int]:
        return [m for m, st in enumerate(state) if st is not None]

    def check(self) -> None:
        """Visit every product state; raises :class:`Unsupported` beyond the caps."""
        start = tuple(s.start() for s in self.specs)
        explore(start, lambda st: [] if len(self._alive(st)) == 1 else [nxt for _, _, nxt in self.edges(st)], "anyOf", self.path)

    def rule(self) -> str:
        self.check()
        start = tuple(s.start() for s in self.specs)
        alts: list[list[Item]] = []
        if self.accepts(start):
            alts.append(['"{"', '"}"'])
        alts.append(['"{"', self.first(start), '"}"'])
        return self.b._rule(("objunion", id(self), start), "objects", lambda _: alts)

    def first(self, state: tuple) -> str:
        alive = self._alive(state)
        if len(alive) == 1:
            return first(self.b, self.specs[alive[0]], state[alive[0]])

        def build(_name: str) -> list[list[Item]]:
            return [[*self.b.pair(t, ref), self.rest(nxt)] for t, ref, nxt in self.edges(state)]

        return self.b._rule(("PF", id(self), state), "members", build)

    def rest(self, state: tuple) -> str:
        alive = self._alive(state)
        if len(alive) == 1:
            return rest(self.b, self.specs[alive[0]], state[alive[0]])

        def build(_name: str) -> list[list[Item]]:
            alts: list[list[Item]] = [[]] if self.accepts(state) else []
            alts.extend(['","', *self.b.pair(t, ref), self.rest(nxt)] for t, ref, nxt in self.edges(state))
            return alts

        return self.b._rule(("PR", id(self), state), "members", build)
