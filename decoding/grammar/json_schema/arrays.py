"""Array rules: ``prefixItems`` as a chain, the rest as lark's bounded repetition, unions as products.

One plain alternative is ``"[" item_0 T(1) "]"`` where ``T(i)`` is the chain of prefix positions
and, from the end of the prefix on, ``("," items) ~ a..b``: lark spells a bounded repetition with
a logarithmic number of rules, so ``maxItems: 1000`` neither nests nor grows the grammar.

``uniqueItems`` is exact when the items take a few literal values (an automaton over the set of
values used); otherwise it is narrowed to arrays of at most one item (``narrow=True``, the
default, with a warning), refused (``narrow=False``), or dropped (``strict=False``).

Alternatives with ``contains`` clauses, or several alternatives at once, run as a product
automaton. A state holds, per alternative, its position (saturating once the position no longer
matters) and how many items matched each ``contains`` clause (saturating above its bounds).
"""

from __future__ import annotations

import json
from itertools import product as cartesian
from typing import TYPE_CHECKING

from decoding.grammar.json_schema.emit import Item, Repeat, explore, fitting, product_moves
from decoding.grammar.json_schema.shapes import TRUE_REF, ArrAtom, Ref, Unsupported

if TYPE_CHECKING:
    from decoding.grammar.json_schema.emit import GrammarBuilder

MAX_UNIQUE_VALUES = 8  # uniqueItems is enforced over at most this many literal values (2^n states)


def array_rule(b: GrammarBuilder, atoms: tuple[ArrAtom, ...], path: str) -> str | None:
    """The rule of a union of array alternatives (``None`` if none admits an array)."""
    atoms = tuple(a for a in (trim(b, a, path) for a in atoms) if a is not None)
    if not atoms:
        return None
    if len(atoms) == 1 and atoms[0].unique:
        return unique_array(b, atoms[0])
    if any(a.unique for a in atoms):
        err = Unsupported("uniqueItems", "uniqueItems inside a union of array alternatives", path)
        if b.norm.narrowing:
            b.norm.narrow(err, "those alternatives take arrays of at most one item")
            atoms = tuple(_at_most_one(a) if a.unique else a for a in atoms if not a.unique or a.min_items <= 1)
            if not atoms:
                return None
        else:
            b.norm.drop(err)
            atoms = tuple(ArrAtom(a.prefix, a.items, a.min_items, a.max_items, a.contains, False) for a in atoms)
    if len(atoms) == 1 and not atoms[0].contains:
        return single_array(b, atoms[0])
    key = ("arrays", atoms)
    if key not in b._memo:
        kept = fitting(b, list(atoms), lambda aa: ArrayProduct(b, aa, path).check(), "array", path)
        if len(kept) == 1 and not kept[0].contains:
            b._memo[key] = single_array(b, kept[0])
        else:
            b._memo[key] = ArrayProduct(b, kept, path).rule()
    return b._memo[key]


def _at_most_one(a: ArrAtom) -> ArrAtom:
    """The arrays of ``a`` with at most one item (their items are trivially distinct)."""
    return ArrAtom(a.prefix, a.items, a.min_items, 1 if a.max_items is None else min(a.max_items, 1), a.contains, False)


def trim(b: GrammarBuilder, a: ArrAtom, path: str) -> ArrAtom | None:
    """The same arrays with ``max_items`` lowered to the first position no item can fill."""
    hi = a.max_items
    for i in range(len(a.prefix) + 1):
        if hi is not None and i >= hi:
            break
        if b.alg.ref_is_empty(a.at(i)):
            hi = i if hi is None else min(hi, i)
            break
    unique = a.unique and (hi is None or hi > 1)
    if unique:
        domain = finite_domain(b, a)
        if domain is None or a.contains:
            err = Unsupported(
                "uniqueItems",
                f"distinct items can only be enforced when items take at most {MAX_UNIQUE_VALUES} literal values",
                path,
            )
            if b.norm.narrowing and a.min_items <= 1:
                b.norm.narrow(err, "arrays of at most one item")
                hi = 1 if hi is None else min(hi, 1)
            else:
                b.norm.drop(err)
            unique = False
        else:
            hi = len(domain) if hi is None else min(hi, len(domain))
    if hi is not None and a.min_items > hi:
        return None
    return ArrAtom(a.prefix, a.items, a.min_items, hi, a.contains, unique)


def finite_domain(b: GrammarBuilder, a: ArrAtom) -> list | None:
    """The JSON literals some item may be (at most :data:`MAX_UNIQUE_VALUES`), or ``None``."""
    values: dict[str, object] = {}
    for ref in list(a.prefix) + [a.items]:
        shape = b.norm.shape(ref)
        if shape.arrs or shape.objs:
            return None
        found: list = [None] if shape.null else []
        found += sorted(shape.bools)
        for atom in shape.nums:
            listed = atom._finite()
            if listed is None:
                return None
            found += [int(v) if v.denominator == 1 else float(v) for v in listed]
        for atom in shape.strs:
            if atom.values is None:
                return None
            found += sorted(v for v in atom.values if atom.contains(v))
        for v in found:
            values.setdefault(json.dumps(v), v)
        if len(values) > MAX_UNIQUE_VALUES:
            return None
    return list(values.values())


def unique_array(b: GrammarBuilder, a: ArrAtom) -> str:
    """Arrays of distinct items from a small set of literals: a state is the set used so far."""
    domain = finite_domain(b, a) or []
    lo, hi = a.min_items, a.max_items

    def moves(used: int) -> list[tuple[str, int]]:
        i = bin(used).count("1")
        if hi is not None and i >= hi:
            return []
        out = []
        for k, v in enumerate(domain):
            ref = b.norm.literal_ref(v).also(a.at(i))
            if not used >> k & 1 and not b.alg.ref_is_empty(ref):
                out.append((b.value(ref), used | 1 << k))
        return out

    def rest(used: int) -> str:
        def build(_name: str) -> list[list[Item]]:
            alts: list[list[Item]] = [[]] if bin(used).count("1") >= lo else []
            alts.extend(['","', v, rest(u)] for v, u in moves(used))
            return alts

        return b._rule(("uniq", a, used), "items", build)

    def build(_name: str) -> list[list[Item]]:
        alts: list[list[Item]] = [['"["', '"]"']] if lo == 0 else []
        alts.extend(['"["', v, rest(u), '"]"'] for v, u in moves(0))
        return alts

    return b._rule(("unique", a), "array", build)


def single_array(b: GrammarBuilder, a: ArrAtom) -> str:
    def build(_name: str) -> list[list[Item]]:
        alts: list[list[Item]] = []
        if a.min_items == 0:
            alts.append(['"["', '"]"'])
        if a.max_items is None or a.max_items >= 1:
            alts.append(['"["', b.value(a.at(0)), tail(b, a, 1), '"]"'])
        return alts

    return b._rule(("array", a), "array", build)


def tail(b: GrammarBuilder, a: ArrAtom, i: int) -> str:
    """Items after the first ``i`` (each with its comma)."""

    def build(_name: str) -> list[list[Item]]:
        lo, hi, k = a.min_items, a.max_items, len(a.prefix)
        if i < k:
            alts: list[list[Item]] = []
            if i >= lo:
                alts.append([])
            if hi is None or i < hi:
                alts.append(['","', b.value(a.at(i)), tail(b, a, i + 1)])
            return alts
        more = None if hi is None else hi - i
        if more is not None and more <= 0:
            return [[]]
        return [[Repeat(('","', b.value(a.items)), max(0, lo - i), more)]]

    return b._rule(("tail", a, i), "items", build)


class ArrayProduct:
    """Arrays whose items decide between alternatives, or that count ``contains`` matches."""

    def __init__(self, b: GrammarBuilder, atoms: list[ArrAtom], path: str) -> None:
        self.b, self.atoms, self.path = b, atoms, path
        self._edges: dict[tuple, list] = {}

    @staticmethod
    def _sat(a: ArrAtom) -> int:
        """The position after which nothing depends on the position any more."""
        if a.max_items is not None:
            return a.max_items
        return max([len(a.prefix), a.min_items] + [start for _, _, _, start in a.contains])

    @staticmethod
    def _cap(lo: int, hi: int | None) -> int:
        return hi + 1 if hi is not None else lo

    def accepts(self, state: tuple) -> bool:
        for a, st in zip(self.atoms, state, strict=True):
            if st is None:
                continue
            i, counts = st
            ok = i >= a.min_items and (a.max_items is None or i <= a.max_items)
            for (_, lo, hi, _), n in zip(a.contains, counts, strict=True):
                ok = ok and n >= lo and (hi is None or n <= hi)
            if ok:
                return True
        return False

    def _moves(self, m: int, st: tuple) -> tuple[Ref, list[tuple[Ref, tuple]]] | None:
        a = self.atoms[m]
        i, counts = st
        if a.max_items is not None and i >= a.max_items:
            return None
        nxt_i = min(i + 1, self._sat(a))
        active = [j for j, (_, _, _, start) in enumerate(a.contains) if i >= start]
        out = []
        for inside in cartesian((True, False), repeat=len(active)):
            ref = TRUE_REF
            new = list(counts)
            dead = False
            for j, ins in zip(active, inside, strict=True):
                c, lo, hi, _ = a.contains[j]
                if ins:
                    ref = ref.also(c)
                    new[j] = min(new[j] + 1, self._cap(lo, hi))
                    dead = dead or (hi is not None and new[j] > hi)
                elif c == TRUE_REF:
                    dead = True
                else:
                    ref = ref.without(c)
            if not dead:
                out.append((ref, (nxt_i, tuple(new))))
        return a.at(i), out

    def edges(self, state: tuple) -> list[tuple[Ref, tuple]]:
        out = self._edges.get(state)
        if out is None:
            moves = {}
            for m, st in enumerate(state):
                mv = self._moves(m, st) if st is not None else None
                if mv is not None:
                    moves[m] = mv
            kw = "contains" if any(a.contains for a in self.atoms) else "anyOf"
            out = self._edges[state] = product_moves(self.b, moves, len(self.atoms), kw, self.path) if moves else []
        return out

    def check(self) -> None:
        """Visit every product state; raises :class:`Unsupported` beyond the caps."""
        start = tuple((0, (0,) * len(a.contains)) for a in self.atoms)
        explore(start, lambda st: [nxt for _, nxt in self.edges(st)], "anyOf", self.path)

    def rule(self) -> str:
        self.check()
        start = tuple((0, (0,) * len(a.contains)) for a in self.atoms)
        alts: list[list[Item]] = []
        if self.accepts(start):
            alts.append(['"["', '"]"'])
        alts.extend(['"["', self.b.value(ref), self.rest(nxt), '"]"'] for ref, nxt in self.edges(start))
        return self.b._rule(("arrunion", id(self)), "array", lambda _: alts)

    def rest(self, state: tuple) -> str:
        alive = [m for m, st in enumerate(state) if st is not None]
        if len(alive) == 1 and not self.atoms[alive[0]].contains:
            return tail(self.b, self.atoms[alive[0]], state[alive[0]][0])

        def build(_name: str) -> list[list[Item]]:
            alts: list[list[Item]] = [[]] if self.accepts(state) else []
            alts.extend(['","', self.b.value(ref), self.rest(nxt)] for ref, nxt in self.edges(state))
            return alts

        return self.b._rule(("AR", id(self), state), "items", build)
