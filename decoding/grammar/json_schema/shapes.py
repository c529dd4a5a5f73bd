"""The normal form of a schema: per JSON type, a union of atoms (conjunctions of constraints).

A :class:`Shape` says, for each JSON type, which values of that type are valid: ``null`` (a bool),
the booleans allowed, and unions of :class:`~.numbers.NumAtom`, :class:`~.strings.StrAtom`,
:class:`ArrAtom` and :class:`ObjAtom`. A keyword that constrains one type leaves the others
untouched, so ``{"minLength": 2}`` allows every number. Subschemas of arrays and objects are not
expanded: they are :class:`Ref` handles (a conjunction of schemas and of complements of schemas),
normalised on demand, which is how recursive ``$ref`` stays finite.

The algebra (:func:`meet`, :func:`join`, :meth:`Algebra.complement`, :meth:`Algebra.is_empty`) is
exact where it answers; where it cannot (a complement of an object with constrained additional
properties, ...) it raises :class:`Unsupported`, which names the keyword that needed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product as cartesian
from typing import TYPE_CHECKING

from decoding.grammar.json_schema.hashing import cached_hash
from decoding.grammar.json_schema.keys import KeyLang
from decoding.grammar.json_schema.numbers import NumAtom
from decoding.grammar.json_schema.regex_ast import Node
from decoding.grammar.json_schema.strings import StrAtom

if TYPE_CHECKING:
    from decoding.grammar.json_schema.keywords import Normalizer

MAX_ATOMS = 256
MAX_REGION_TREES = 6


class Unsupported(ValueError):
    """A schema construct that the converter cannot turn into an exact grammar.

    Attributes:
        keyword: the JSON Schema keyword responsible.
        path: JSON pointer of the schema that holds it.
    """

    def __init__(self, keyword: str, reason: str, path: str = "#") -> None:
        # "schema": the schema as a whole (e.g. one no value satisfies), not one of its keywords
        what = "the JSON Schema" if keyword == "schema" else f"unsupported JSON Schema keyword {keyword!r}"
        super().__init__(f"{what} at {path}: {reason}")
        self.keyword, self.reason, self.path = keyword, reason, path


@cached_hash
@dataclass(frozen=True)
class Ref:
    """A subschema handle: all of ``pos`` (registry ids) and none of ``neg`` (other handles)."""

    pos: frozenset[int] = frozenset()
    neg: frozenset[Ref] = frozenset()

    def also(self, other: Ref) -> Ref:
        return Ref(self.pos | other.pos, self.neg | other.neg)

    def without(self, other: Ref) -> Ref:
        if not other.pos and len(other.neg) == 1:  # not (not x) = x
            return self.also(next(iter(other.neg)))
        return Ref(self.pos, self.neg | {other})


TRUE_REF = Ref()


@cached_hash
@dataclass(frozen=True)
class ArrAtom:
    """Arrays: ``prefix[i]`` for the first items, ``items`` for the rest, a count range, and
    ``contains`` clauses ``(ref, lo, hi, start)``: between ``lo`` and ``hi`` items from position
    ``start`` on match ``ref``."""

    prefix: tuple[Ref, ...] = ()
    items: Ref = TRUE_REF
    min_items: int = 0
    max_items: int | None = None
    contains: tuple[tuple[Ref, int, int | None, int], ...] = ()
    unique: bool = False

    def at(self, i: int) -> Ref:
        return self.prefix[i] if i < len(self.prefix) else self.items

    def intersect(self, o: ArrAtom) -> ArrAtom:
        n = max(len(self.prefix), len(o.prefix))
        prefix = tuple(self.at(i).also(o.at(i)) for i in range(n))
        hi = self.max_items if o.max_items is None else o.max_items if self.max_items is None else min(self.max_items, o.max_items)
        return ArrAtom(
            prefix,
            self.items.also(o.items),
            max(self.min_items, o.min_items),
            hi,
            tuple(dict.fromkeys(self.contains + o.contains)),
            self.unique or o.unique,
        )


@cached_hash
@dataclass(frozen=True)
class ObjAtom:
    """Objects: the conjunction of ``props`` (a listed key's schema), ``required`` names, ``forall``
    clauses ``(keys, ref)`` (every key in the language ``keys`` has a value matching ``ref``:
    ``patternProperties``, ``additionalProperties``, ``propertyNames``), ``exists`` clauses (at
    least one key in ``keys`` with a value matching ``ref``: complements need them) and a count range.
    """

    props: tuple[tuple[str, Ref], ...] = ()
    required: tuple[str, ...] = ()
    forall: tuple[tuple[KeyLang, Ref], ...] = ()
    exists: tuple[tuple[KeyLang, Ref], ...] = ()
    min_props: int = 0
    max_props: int | None = None

    def names(self) -> list[str]:
        """Names that get their own entry: ``props``, then other ``required``, then names the key
        languages single out (so the other keys split by trees alone)."""
        out = [k for k, _ in self.props]
        out.extend(self.required)
        for lang, _ in self.forall + self.exists:
            out.extend(sorted(lang.names))
        return list(dict.fromkeys(out))

    def trees(self) -> list[Node]:
        """Every pattern tree the key languages mention (they split the other keys into regions)."""
        out: list[Node] = []
        for lang, _ in self.forall + self.exists:
            out.extend(sorted(lang.inside | lang.outside, key=repr))
        return list(dict.fromkeys(out))

    def key_ref(self, key: str) -> Ref:
        ref = TRUE_REF
        for k, r in self.props:
            if k == key:
                ref = ref.also(r)
        for lang, r in self.forall:
            if lang.contains(key):
                ref = ref.also(r)
        return ref

    def intersect(self, o: ObjAtom) -> ObjAtom:
        props: dict[str, Ref] = {}
        for k, r in self.props + o.props:
            props[k] = props[k].also(r) if k in props else r
        hi = self.max_props if o.max_props is None else o.max_props if self.max_props is None else min(self.max_props, o.max_props)
        return ObjAtom(
            tuple(props.items()),
            tuple(dict.fromkeys(self.required + o.required)),
            tuple(dict.fromkeys(self.forall + o.forall)),
            tuple(dict.fromkeys(self.exists + o.exists)),
            max(self.min_props, o.min_props),
            hi,
        )


def object_regions(o: ObjAtom, taken: frozenset[str]) -> list[tuple[KeyLang, Ref, tuple[bool, ...]]]:
    """The keys outside ``taken`` split into disjoint non-empty languages by the pattern trees:
    ``(keys, forall ref, which exists clauses they belong to)``.

    Raises:
        Unsupported: more than :data:`MAX_REGION_TREES` pattern trees on one object.
    """
    trees = o.trees()
    if len(trees) > MAX_REGION_TREES:
        raise Unsupported("patternProperties", f"more than {MAX_REGION_TREES} patterns on one object")
    out = []
    for inside in cartesian((True, False), repeat=len(trees)):
        ins = frozenset(t for t, i in zip(trees, inside, strict=True) if i)
        outs = frozenset(t for t, i in zip(trees, inside, strict=True) if not i)
        lang = KeyLang(ins, outs, taken)
        if lang.is_empty():
            continue
        ref = TRUE_REF
        for k, r in o.forall:
            if k.inside <= ins and k.outside <= outs:
                ref = ref.also(r)
        member = tuple(k.inside <= ins and k.outside <= outs for k, _ in o.exists)
        out.append((lang, ref, member))
    return out


@cached_hash
@dataclass(frozen=True)
class Shape:
    """Valid values per JSON type (see the module docstring). ``Shape()`` is every value."""

    null: bool = True
    bools: frozenset[bool] = frozenset({False, True})
    nums: tuple[NumAtom, ...] = (NumAtom(),)
    strs: tuple[StrAtom, ...] = (StrAtom(),)
    arrs: tuple[ArrAtom, ...] = (ArrAtom(),)
    objs: tuple[ObjAtom, ...] = (ObjAtom(),)


TOP = Shape()
BOTTOM = Shape(False, frozenset(), (), (), (), ())
FIELDS = ("nums", "strs", "arrs", "objs")
_TOPS = {"nums": NumAtom(), "strs": StrAtom(), "arrs": ArrAtom(), "objs": ObjAtom()}


def only(**kw) -> Shape:
    """A shape with the given fields and every other type excluded."""
    base = dict(null=False, bools=frozenset(), nums=(), strs=(), arrs=(), objs=())
    base.update(kw)
    return Shape(**base)


def constrain(**kw) -> Shape:
    """A shape with the given fields and every other type unconstrained."""
    return Shape(**kw)


def _dedupe(atoms, top) -> tuple:
    atoms = tuple(dict.fromkeys(atoms))
    return (top,) if top in atoms else atoms


def _meet_atoms(xs: tuple, ys: tuple, top) -> tuple:
    if xs == (top,):
        return ys
    if ys == (top,):
        return xs
    if len(xs) * len(ys) > MAX_ATOMS:
        raise Unsupported("allOf", f"the intersection has more than {MAX_ATOMS} alternatives")
    out = []
    for x, y in cartesian(xs, ys):
        z = x.intersect(y)
        if not (hasattr(z, "is_empty") and z.is_empty()):
            out.append(z)
    return _dedupe(out, top)


def meet(a: Shape, b: Shape) -> Shape:
    """Values valid under both shapes."""
    if a == TOP:
        return b
    if b == TOP:
        return a
    return Shape(
        a.null and b.null,
        a.bools & b.bools,
        *(_meet_atoms(getattr(a, f), getattr(b, f), _TOPS[f]) for f in FIELDS),
    )


def join(a: Shape, b: Shape) -> Shape:
    """Values valid under either shape."""
    return Shape(
        a.null or b.null,
        a.bools | b.bools,
        *(_dedupe(getattr(a, f) + getattr(b, f), _TOPS[f]) for f in FIELDS),
    )


def restrict_to(shape: Shape, kind: str) -> Shape:
    """The part of ``shape`` of one type (``null``, ``bools`` or a field name); the rest excluded."""
    return only(**{kind: getattr(shape, kind)})


@dataclass
class Algebra:
    """Complements and emptiness, which need subschemas normalised (through ``norm``)."""

    norm: Normalizer
    _empty_stack: set = field(default_factory=set)
    _empty_memo: dict = field(default_factory=dict)  # (ref, narrowing) -> ref_is_empty at the top level

    # --- complement -----------------------------------------------------------------------------
    def complement(self, s: Shape, keyword: str, path: str) -> Shape:
        """Every value not in ``s`` (raises :class:`Unsupported` naming ``keyword`` where inexact)."""
        out = {"null": not s.null, "bools": frozenset({False, True}) - s.bools}
        for f in FIELDS:
            atoms = getattr(s, f)
            top = _TOPS[f]
            if atoms == (top,):
                out[f] = ()
                continue
            acc: tuple = (top,)
            for atom in atoms:
                acc = _meet_atoms(acc, self._atom_complement(f, atom, keyword, path), top)
            out[f] = acc
        return Shape(**out)

    def _atom_complement(self, f: str, atom, keyword: str, path: str) -> tuple:
        top = _TOPS[f]
        if f in ("nums", "strs"):
            return _dedupe(tuple(atom.complement()), top)
        if f == "arrs":
            return self._arr_complement(atom, keyword, path)
        return self._obj_complement(atom, keyword, path)

    def _arr_complement(self, a: ArrAtom, keyword: str, path: str) -> tuple:
        if a.unique:
            raise Unsupported(keyword, "needs the complement of uniqueItems (arrays with a repeated item)", path)
        out = []
        if a.min_items > 0:
            out.append(ArrAtom(max_items=a.min_items - 1))
        if a.max_items is not None:
            out.append(ArrAtom(min_items=a.max_items + 1))
        for i, r in enumerate(a.prefix):
            if r != TRUE_REF:
                out.append(ArrAtom(prefix=(TRUE_REF,) * i + (TRUE_REF.without(r),), min_items=i + 1))
        if a.items != TRUE_REF:
            k = len(a.prefix)
            out.append(ArrAtom(contains=((TRUE_REF.without(a.items), 1, None, k),), min_items=k + 1))
        for c, lo, hi, start in a.contains:
            if lo > 0:
                out.append(ArrAtom(contains=((c, 0, lo - 1, start),)))
            if hi is not None:
                out.append(ArrAtom(contains=((c, hi + 1, None, start),), min_items=start + hi + 1))
        return _dedupe(tuple(out), ArrAtom())

    def _obj_complement(self, o: ObjAtom, keyword: str, path: str) -> tuple:
        false = self.norm.false_ref
        out = []
        for k in o.required:
            out.append(ObjAtom(props=((k, false),)))
        names = o.names()
        for k in names:
            r = o.key_ref(k)
            if r != TRUE_REF:
                out.append(ObjAtom(props=((k, TRUE_REF.without(r)),), required=(k,)))
        try:
            regions = object_regions(o, frozenset(names))
        except Unsupported as e:
            raise Unsupported(keyword, e.reason, path) from None
        for lang, r, _ in regions:
            if r != TRUE_REF:
                out.append(ObjAtom(exists=((lang, TRUE_REF.without(r)),)))
        for lang, r in o.exists:  # no key of lang has a value matching r
            out.append(ObjAtom(forall=((lang, TRUE_REF.without(r)),)))
        if o.min_props > 0:
            out.append(ObjAtom(max_props=o.min_props - 1))
        if o.max_props is not None:
            out.append(ObjAtom(min_props=o.max_props + 1))
        return _dedupe(tuple(out), ObjAtom())

    # --- emptiness ------------------------------------------------------------------------------
    def ref_is_empty(self, ref: Ref) -> bool:
        """True only when no value matches ``ref`` (cycles and unsupported parts count as non-empty).

        Memoised for calls made outside any other emptiness test or normalisation (their answer
        depends only on ``ref`` and the narrowing mode); nested calls depend on what is on the stack.
        """
        if ref in self._empty_stack:
            return False
        key = (ref, self.norm.narrowing) if not self._empty_stack and not self.norm._active else None
        if key is not None:
            known = self._empty_memo.get(key)
            if known is not None:
                return known
        self._empty_stack.add(ref)
        try:
            out = self.is_empty(self.norm.shape(ref))
        except Unsupported:
            out = False
        finally:
            self._empty_stack.discard(ref)
        if key is not None:
            self._empty_memo[key] = out
        return out

    def is_empty(self, s: Shape) -> bool:
        if s.null or s.bools:
            return False
        if any(not a.is_empty() for a in s.nums) or any(not a.is_empty() for a in s.strs):
            return False
        return all(self.arr_is_empty(a) for a in s.arrs) and all(self.obj_is_empty(o) for o in s.objs)

    def arr_is_empty(self, a: ArrAtom) -> bool:
        if a.max_items is not None and a.min_items > a.max_items:
            return True
        return any(self.ref_is_empty(a.at(i)) for i in range(min(a.min_items, len(a.prefix) + 1)))

    def obj_is_empty(self, o: ObjAtom) -> bool:
        if o.max_props is not None and (o.min_props > o.max_props or len(set(o.required)) > o.max_props):
            return True
        if any(self.ref_is_empty(r) for _, r in o.exists):
            return True
        return any(self.ref_is_empty(o.key_ref(k)) for k in o.required)

    def disjoint(self, a: Shape, b: Shape) -> bool:
        return self.is_empty(meet(a, b))
