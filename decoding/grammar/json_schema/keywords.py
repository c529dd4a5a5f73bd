"""What each JSON Schema keyword means, as a :class:`~.shapes.Shape` (drafts 4, 6, 7, 2019-09, 2020-12).

:class:`Normalizer` keeps a registry of the subschemas met so far (with their base URI and JSON
pointer) and turns a :class:`~.shapes.Ref` into a shape by meeting the meaning of every keyword.
Annotations and keywords no draft defines are ignored, as the specification requires. A keyword
that changes validity but has no exact grammar raises :class:`~.shapes.Unsupported` naming it
(``strict=True``), or with ``strict=False`` is dropped with a warning: the grammar then accepts
more than the schema (an over-approximation, e.g. ``uniqueItems`` unenforced, ``oneOf`` as
``anyOf``).

``oneOf``: alternatives that are provably disjoint (per JSON type) are joined as ``anyOf``;
where two may overlap, each is intersected with the complements of the others, which the algebra
computes for scalars and for objects whose other keys are unconstrained; anything else raises
:class:`~.shapes.Unsupported` (in strict mode). With narrowing on (the default), overlapping
object alternatives are instead told apart by a key the other alternative requires (a subset of
the complement: objects holding that key with a value the other rejects are not generated,
:meth:`Normalizer._excluding`), which keeps the product automata small; ``narrow=False`` keeps
the exact complement.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from decoding.grammar.json_schema.ecma import RegexUnsupported, pattern_language
from decoding.grammar.json_schema.formats import format_language
from decoding.grammar.json_schema.keys import KeyLang
from decoding.grammar.json_schema.numbers import NumAtom, to_fraction
from decoding.grammar.json_schema.refs import ROOT_URI, RefError, Resolver
from decoding.grammar.json_schema.regex_ast import Node, alt
from decoding.grammar.json_schema.shapes import (
    BOTTOM,
    FIELDS,
    TOP,
    TRUE_REF,
    Algebra,
    ArrAtom,
    ObjAtom,
    Ref,
    Shape,
    Unsupported,
    constrain,
    join,
    meet,
    only,
    restrict_to,
)
from decoding.grammar.json_schema.strings import StrAtom

DRAFTS = {"draft-03": 4, "draft-04": 4, "draft-06": 6, "draft-07": 7, "2019-09": 2019, "2020-12": 2020}


class InvalidSchema(ValueError):
    """The schema itself is malformed (a keyword with a value of the wrong kind)."""


class SchemaWarning(UserWarning):
    """``strict=False``: a keyword was dropped, so the grammar accepts more than the schema."""


class NarrowingWarning(UserWarning):
    """``narrow=True``: a construct without a small exact grammar was replaced by a subset of its
    values (e.g. ``uniqueItems`` arrays of at most one item), so the grammar accepts fewer texts
    than the schema; everything it accepts is still valid."""


ANNOTATIONS = {
    "title", "description", "default", "examples", "example", "$comment", "readOnly", "writeOnly",
    "deprecated", "markdownDescription", "contentMediaType", "contentEncoding", "$schema",
}  # fmt: skip


def _canonical(schema: Any) -> str:
    """JSON text of a schema without its own annotations (equal texts mean equal schemas)."""
    if isinstance(schema, dict):
        schema = {k: v for k, v in schema.items() if k not in ANNOTATIONS and not k.startswith("x-")}
    return json.dumps(schema, sort_keys=True, default=repr)


def detect_draft(schema: Any, default: int = 2020) -> int:
    """The draft named by the root ``$schema`` (``default`` when absent or unknown)."""
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    if isinstance(uri, str):
        for key, d in DRAFTS.items():
            if key in uri:
                return d
    return default


class Normalizer:
    """Subschema registry and keyword semantics for one schema document.

    Args:
        root: the schema (``dict`` or ``bool``).
        draft: 4, 6, 7, 2019 or 2020 (default: from ``$schema``, else 2020).
        strict: raise on unsupported keywords (else warn and drop them).
        narrow: in strict mode, replace a construct whose exact grammar is too large by a sound
            subset of its values (with a :class:`NarrowingWarning`) instead of raising.
    """

    def __init__(self, root: Any, draft: int | None = None, strict: bool = True, narrow: bool = True) -> None:
        self.root = root
        self.draft = draft if draft is not None else detect_draft(root)
        if self.draft not in (4, 6, 7, 2019, 2020):
            raise ValueError(f"draft must be one of 4, 6, 7, 2019, 2020, got {self.draft!r}")
        self.strict = strict
        self.narrowing = narrow and strict
        self.resolver = Resolver(root, self.draft)
        self.registry: list[tuple[Any, str, str]] = []
        self._ids: dict[tuple[int, str], int] = {}
        self._by_content: dict[tuple[str, str], int] = {}
        self._keep: list[Any] = []  # keeps every registered object alive (ids stay unique)
        self._literals: dict[str, Any] = {}
        self._shapes: dict[tuple[Ref, bool], Shape] = {}  # keyed by (ref, narrowing on)
        self._active: list[Ref] = []
        self.alg = Algebra(self)
        self.warnings: list[str] = []
        self.false_ref = self.ref(False, ROOT_URI, "#")
        self.root_ref = self.ref(root, ROOT_URI, "#")

    # --- registry -------------------------------------------------------------------------------
    def ref(self, schema: Any, base: str, path: str) -> Ref:
        """A handle for ``schema`` found at ``path`` with base URI ``base``."""
        if schema is True or (isinstance(schema, dict) and not schema):
            return TRUE_REF
        key = (id(schema), base)
        idx = self._ids.get(key)
        if idx is None:
            content = (_canonical(schema), base)  # equal subschemas share one handle (and one rule)
            idx = self._by_content.get(content)
            if idx is None:
                idx = self._by_content[content] = len(self.registry)
                self.registry.append((schema, base, path))
                self._keep.append(schema)
            self._ids[key] = idx
        return Ref(frozenset({idx}))

    def literal_ref(self, value: Any) -> Ref:
        """A handle for ``{"const": value}``."""
        key = json.dumps(value, sort_keys=True)
        schema = self._literals.setdefault(key, {"const": value})
        return self.ref(schema, ROOT_URI, f"#(const {key[:40]})")

    def path_of(self, ref: Ref) -> str:
        return self.registry[min(ref.pos)][2] if ref.pos else "#"

    # --- shapes ---------------------------------------------------------------------------------
    def shape(self, ref: Ref) -> Shape:
        """The normal form of ``ref`` (memoised)."""
        key = (ref, self.narrowing)
        out = self._shapes.get(key)
        if out is not None:
            return out
        if ref in self._active:
            raise Unsupported(
                "$ref", "the schema refers to itself without an object or array in between (no value is finite)", self.path_of(ref)
            )
        self._active.append(ref)
        try:
            s = TOP
            for idx in sorted(ref.pos):
                schema, base, path = self.registry[idx]
                s = meet(s, self._schema_shape(schema, base, path))
            for neg in sorted(ref.neg, key=repr):
                s = meet(s, self.complement(neg, "not", self.path_of(neg)))
        finally:
            self._active.pop()
        self._shapes[key] = s
        return s

    @contextlib.contextmanager
    def exact(self) -> Iterator[None]:
        """Shapes computed inside are exact (no narrowing): what a complement needs, since the
        complement of a narrowed subset would be a superset."""
        saved, self.narrowing = self.narrowing, False
        try:
            yield
        finally:
            self.narrowing = saved

    def exact_shape(self, ref: Ref) -> Shape:
        with self.exact():
            return self.shape(ref)

    def complement(self, ref: Ref, keyword: str, path: str) -> Shape:
        """The values outside ``ref``'s schema, from its exact shape."""
        with self.exact():
            return self.alg.complement(self.shape(ref), keyword, path)

    def _sub(self, schema: dict, key: str, base: str, path: str) -> Ref:
        return self.ref(schema[key], base, f"{path}/{key}")

    def drop(self, err: Unsupported) -> None:
        """Raise ``err`` (strict) or warn that its keyword is ignored (an over-approximation)."""
        if self.strict:
            raise err
        msg = f"{err} (strict=False: the keyword is ignored, so the grammar accepts more than the schema)"
        self.warnings.append(msg)
        warnings.warn(msg, SchemaWarning, stacklevel=4)

    def narrow(self, err: Unsupported, how: str) -> None:
        """Raise ``err`` unless narrowing is on; then warn that ``how`` replaces the exact language."""
        if not self.narrowing:
            raise err
        msg = f"{err}; narrowed: {how} (the grammar accepts fewer texts than the schema, all of them valid)"
        if msg not in self.warnings:
            self.warnings.append(msg)
            warnings.warn(msg, NarrowingWarning, stacklevel=4)

    def _schema_shape(self, schema: Any, base: str, path: str) -> Shape:
        if schema is True:
            return TOP
        if schema is False:
            return BOTTOM
        if not isinstance(schema, dict):
            raise InvalidSchema(f"schema at {path} must be an object or a boolean, got {schema!r}")
        if "$ref" in schema and self.draft <= 7:
            return self.shape(self._resolve(schema["$ref"], base, path))
        base = self.resolver.base(schema, base)
        s = TOP
        for keyword, fn in self._parts(schema, base, path):
            try:
                s = meet(s, fn())
            except Unsupported as e:
                if e.keyword == "$ref" and "refers to itself" in e.reason:
                    raise
                self.drop(e)
            except (RegexUnsupported, RefError) as e:
                self.drop(Unsupported(keyword, str(e), path))
            if s == BOTTOM:
                break
        return s

    def _resolve(self, ref: Any, base: str, path: str) -> Ref:
        try:
            target, tbase = self.resolver.resolve(ref, base)
        except RefError as e:
            raise Unsupported("$ref", str(e), path) from e
        return self.ref(target, tbase, f"{path}/$ref")

    def _parts(self, schema: dict, base: str, path: str):
        """``(keyword, thunk)`` pairs whose shapes, met together, give the schema's meaning."""
        parts = []
        if "type" in schema:
            parts.append(("type", lambda: self._type(schema["type"], path)))
        if "const" in schema:
            parts.append(("const", lambda: self._literals_shape([schema["const"]])))
        if "enum" in schema:
            parts.append(("enum", lambda: self._enum(schema["enum"], path)))
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
            parts.append(("minimum", lambda: self._numeric(schema, path)))
        if any(k in schema for k in ("minLength", "maxLength", "pattern", "format")):
            parts.append(("pattern", lambda: self._string(schema, path)))
        if any(k in schema for k in ("items", "prefixItems", "additionalItems", "minItems", "maxItems", "contains", "uniqueItems")):
            parts.append(("items", lambda: self._array(schema, base, path)))
        if any(
            k in schema
            for k in ("properties", "patternProperties", "additionalProperties", "required", "minProperties", "maxProperties", "propertyNames")
        ):
            parts.append(("properties", lambda: self._object(schema, base, path)))
        for key in ("dependentRequired", "dependentSchemas", "dependencies"):
            if key in schema:
                parts.append((key, lambda key=key: self._dependencies(schema, key, base, path)))
        if "$ref" in schema:
            parts.append(("$ref", lambda: self.shape(self._resolve(schema["$ref"], base, path))))
        for key in ("$dynamicRef", "$recursiveRef"):
            if key in schema:
                parts.append((key, lambda key=key: self._dynamic_ref(schema, key, base, path)))
        if "allOf" in schema:
            parts.append(("allOf", lambda: self._all_of(schema, base, path)))
        if "anyOf" in schema:
            parts.append(("anyOf", lambda: self._any_of(schema, base, path)))
        if "oneOf" in schema:
            parts.append(("oneOf", lambda: self._one_of(schema, base, path)))
        if "not" in schema:
            parts.append(("not", lambda: self.complement(self._sub(schema, "not", base, path), "not", path)))
        if "if" in schema and ("then" in schema or "else" in schema) and self.draft >= 7:
            parts.append(("if", lambda: self._if(schema, base, path)))
        for key, other in (("unevaluatedProperties", "additionalProperties"), ("unevaluatedItems", "items")):
            if key in schema and self.draft >= 2019:
                parts.append((key, lambda key=key, other=other: self._unevaluated(schema, key, other, base, path)))
        return parts

    # --- types and literals ---------------------------------------------------------------------
    def _type(self, t: Any, path: str) -> Shape:
        names = t if isinstance(t, list) else [t]
        s = BOTTOM
        for name in names:
            if name == "null":
                part = only(null=True)
            elif name == "boolean":
                part = only(bools=frozenset({False, True}))
            elif name == "integer":
                part = only(nums=(NumAtom(integer=True),))
            elif name == "number":
                part = only(nums=(NumAtom(),))
            elif name == "string":
                part = only(strs=(StrAtom(),))
            elif name == "array":
                part = only(arrs=(ArrAtom(),))
            elif name == "object":
                part = only(objs=(ObjAtom(),))
            elif name == "any":
                part = TOP
            elif isinstance(name, dict):
                part = self.shape(self.ref(name, ROOT_URI, path))
            else:
                raise InvalidSchema(f"unknown type {name!r} at {path}")
            s = join(s, part)
        return s

    def _enum(self, values: Any, path: str) -> Shape:
        if not isinstance(values, list):
            raise InvalidSchema(f"enum at {path} must be a list, got {values!r}")
        return self._literals_shape(values)

    def _literals_shape(self, values: list) -> Shape:
        null = False
        bools: set[bool] = set()
        nums: set[Fraction] = set()
        strs: set[str] = set()
        arrs: list[ArrAtom] = []
        objs: list[ObjAtom] = []
        for v in values:
            if v is None:
                null = True
            elif isinstance(v, bool):
                bools.add(v)
            elif isinstance(v, (int, float)):
                nums.add(to_fraction(v))
            elif isinstance(v, str):
                strs.add(v)
            elif isinstance(v, list):
                arrs.append(ArrAtom(tuple(self.literal_ref(x) for x in v), self.false_ref, len(v), len(v)))
            elif isinstance(v, dict):
                keys = tuple(v)
                props = tuple((k, self.literal_ref(x)) for k, x in v.items())
                objs.append(ObjAtom(props, keys, ((KeyLang(names=frozenset(keys)), self.false_ref),)))
        return only(
            null=null,
            bools=frozenset(bools),
            nums=(NumAtom(values=frozenset(nums)),) if nums else (),
            strs=(StrAtom(values=frozenset(strs)),) if strs else (),
            arrs=tuple(dict.fromkeys(arrs)),
            objs=tuple(dict.fromkeys(objs)),
        )

    # --- per-type keywords ----------------------------------------------------------------------
    def _number(self, schema: dict, key: str, path: str) -> Fraction:
        try:
            return to_fraction(schema[key])
        except ValueError as e:
            raise InvalidSchema(f"{key} at {path}: {e}") from None

    def _numeric(self, schema: dict, path: str) -> Shape:
        atom = NumAtom()
        if "minimum" in schema:
            excl = schema.get("exclusiveMinimum") is True
            atom = atom.intersect(NumAtom(lo=self._number(schema, "minimum", path), lo_excl=excl))
        if "maximum" in schema:
            excl = schema.get("exclusiveMaximum") is True
            atom = atom.intersect(NumAtom(hi=self._number(schema, "maximum", path), hi_excl=excl))
        if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            atom = atom.intersect(NumAtom(lo=self._number(schema, "exclusiveMinimum", path), lo_excl=True))
        if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
            atom = atom.intersect(NumAtom(hi=self._number(schema, "exclusiveMaximum", path), hi_excl=True))
        if "multipleOf" in schema:
            q = self._number(schema, "multipleOf", path)
            if q <= 0:
                raise InvalidSchema(f"multipleOf at {path} must be > 0, got {schema['multipleOf']!r}")
            atom = atom.intersect(NumAtom(multiples=(q,)))
        return constrain(nums=(atom,))

    def _count(self, schema: dict, key: str, path: str) -> int:
        v = schema[key]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidSchema(f"{key} at {path} must be a non-negative integer, got {v!r}")
        return v

    def _string(self, schema: dict, path: str) -> Shape:
        trees: set[Node] = set()
        if "pattern" in schema:
            try:
                trees.add(pattern_language(schema["pattern"]))
            except RegexUnsupported as e:
                raise Unsupported("pattern", str(e), path) from None
        fmt = schema.get("format")
        if isinstance(fmt, str):
            lang = format_language(fmt)
            if lang is not None:
                trees.add(lang)
        lo = self._count(schema, "minLength", path) if "minLength" in schema else 0
        hi = self._count(schema, "maxLength", path) if "maxLength" in schema else None
        return constrain(strs=(StrAtom(lo, hi, frozenset(trees)),))

    def _array(self, schema: dict, base: str, path: str) -> Shape:
        prefix: tuple[Ref, ...] = ()
        items = TRUE_REF
        raw = schema.get("items")
        if isinstance(raw, list):
            prefix = tuple(self.ref(s, base, f"{path}/items/{i}") for i, s in enumerate(raw))
            if "additionalItems" in schema:
                items = self._sub(schema, "additionalItems", base, path)
        elif "items" in schema:
            items = self._sub(schema, "items", base, path)
        if self.draft >= 2020 and isinstance(schema.get("prefixItems"), list):
            prefix = tuple(self.ref(s, base, f"{path}/prefixItems/{i}") for i, s in enumerate(schema["prefixItems"]))
        lo = self._count(schema, "minItems", path) if "minItems" in schema else 0
        hi = self._count(schema, "maxItems", path) if "maxItems" in schema else None
        contains: tuple = ()
        if "contains" in schema:
            c_lo, c_hi = 1, None
            if self.draft >= 2019:
                c_lo = self._count(schema, "minContains", path) if "minContains" in schema else 1
                c_hi = self._count(schema, "maxContains", path) if "maxContains" in schema else None
            if c_lo > 0 or c_hi is not None:
                contains = ((self._sub(schema, "contains", base, path), c_lo, c_hi, 0),)
        unique = schema.get("uniqueItems") is True
        return constrain(arrs=(ArrAtom(prefix, items, lo, hi, contains, unique),))

    def _object(self, schema: dict, base: str, path: str) -> Shape:
        props_raw = schema.get("properties", {})
        if not isinstance(props_raw, dict):
            raise InvalidSchema(f"properties at {path} must be an object")
        props = tuple((k, self.ref(v, base, f"{path}/properties/{k}")) for k, v in props_raw.items())
        forall: list[tuple[KeyLang, Ref]] = []
        trees = []
        for p, sub in (schema.get("patternProperties") or {}).items():
            try:
                tree = pattern_language(p)
            except RegexUnsupported as e:
                raise Unsupported("patternProperties", str(e), path) from None
            trees.append(tree)
            ref = self.ref(sub, base, f"{path}/patternProperties/{p}")
            if ref != TRUE_REF:
                forall.append((KeyLang(inside=frozenset({tree})), ref))
        if "additionalProperties" in schema:
            a = self._sub(schema, "additionalProperties", base, path)
            if a != TRUE_REF:
                forall.append((KeyLang(outside=frozenset(trees), names=frozenset(props_raw)), a))
        required = schema.get("required", [])
        if isinstance(required, bool):  # draft 3
            required = []
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            raise InvalidSchema(f"required at {path} must be a list of strings, got {required!r}")
        lo = self._count(schema, "minProperties", path) if "minProperties" in schema else 0
        hi = self._count(schema, "maxProperties", path) if "maxProperties" in schema else None
        if "propertyNames" in schema:
            names = self.shape(self._sub(schema, "propertyNames", base, path))
            if not names.strs:
                hi = 0
            elif names.strs != (StrAtom(),):
                tree = alt(*(a.tree() for a in names.strs))
                forall.append((KeyLang(outside=frozenset({tree})), self.false_ref))
        atom = ObjAtom(props, tuple(dict.fromkeys(required)), tuple(forall), (), lo, hi)
        return constrain(objs=(atom,))

    def _dependencies(self, schema: dict, key: str, base: str, path: str) -> Shape:
        deps = schema[key]
        if not isinstance(deps, dict):
            raise InvalidSchema(f"{key} at {path} must be an object")
        required = set(schema.get("required", []) or [])
        s = TOP
        for k, dep in deps.items():
            if isinstance(dep, list) and key != "dependentSchemas":
                present = constrain(objs=(ObjAtom(required=(k, *dep)),))
            elif isinstance(dep, (dict, bool)) and key != "dependentRequired":
                target = self.shape(self.ref(dep, base, f"{path}/{key}/{k}"))
                present = join(
                    meet(only(objs=(ObjAtom(required=(k,)),)), target),
                    Shape(objs=()),  # every non-object is unaffected
                )
            else:
                raise InvalidSchema(f"{key}/{k} at {path} must be a list of names or a schema")
            if k in required:
                s = meet(s, present)
            else:
                absent = constrain(objs=(ObjAtom(props=((k, self.false_ref),)),))
                s = meet(s, join(absent, present))
        return s

    # --- applicators ----------------------------------------------------------------------------
    def _subs(self, schema: dict, key: str, base: str, path: str) -> list[Shape]:
        subs = schema[key]
        if not isinstance(subs, list) or not subs:
            raise InvalidSchema(f"{key} at {path} must be a non-empty list of schemas")
        return [self.shape(self.ref(s, base, f"{path}/{key}/{i}")) for i, s in enumerate(subs)]

    def _all_of(self, schema: dict, base: str, path: str) -> Shape:
        s = TOP
        for sub in self._subs(schema, "allOf", base, path):
            s = meet(s, sub)
        return s

    def _any_of(self, schema: dict, base: str, path: str) -> Shape:
        s = BOTTOM
        for sub in self._subs(schema, "anyOf", base, path):
            s = join(s, sub)
        return s

    def _one_of(self, schema: dict, base: str, path: str) -> Shape:
        subs = self._subs(schema, "oneOf", base, path)
        exact = subs
        if self.narrowing:
            with self.exact():
                exact = self._subs(schema, "oneOf", base, path)
        try:
            return self.exclusive_union(subs, path, exact)
        except Unsupported as e:
            if self.strict:
                raise
            self.drop(e)
            s = BOTTOM
            for sub in subs:
                s = join(s, sub)
            return s

    def exclusive_union(self, subs: list[Shape], path: str, exact: list[Shape] | None = None) -> Shape:
        """Values valid under exactly one of ``subs`` (``oneOf``).

        ``exact``: the alternatives' exact shapes where ``subs`` are narrowed (subsets): overlaps
        and exclusions are decided on the exact ones, the values kept come from ``subs``.
        """
        exact = subs if exact is None else exact
        out: dict[str, Any] = {
            "null": sum(s.null for s in exact) == 1 and any(s.null for s in subs),
            "bools": frozenset(
                b for b in (False, True) if sum(b in s.bools for s in exact) == 1 and any(b in s.bools for s in subs)
            ),
        }
        for f in FIELDS:
            idx = [i for i, e in enumerate(exact) if getattr(e, f)]
            with self.exact():
                ex = {i: restrict_to(exact[i], f) for i in idx}
                overlap = {(i, j) for i in idx for j in idx if i < j and not self.alg.disjoint(ex[i], ex[j])}
            acc = only()
            for i in idx:
                p = restrict_to(subs[i], f)
                if not getattr(p, f):
                    continue
                for j in idx:
                    if i != j and (min(i, j), max(i, j)) in overlap:
                        p = meet(p, self._excluding(p, ex[j], f, path))
                acc = join(acc, p)
            out[f] = getattr(acc, f)
        return Shape(**out)

    def _excluding(self, p: Shape, q: Shape, f: str, path: str) -> Shape:
        """Values of type ``f`` outside ``q``: its complement, or (narrowing on, objects) the
        objects without a key every object of ``q`` requires and ``p`` does not (a subset of the
        complement that keeps the product automata small: alternatives told apart by a key)."""
        if f == "objs" and self.narrowing and p.objs:
            required = set.intersection(*(set(a.required) for a in q.objs))
            in_p = set.intersection(*(set(a.required) for a in p.objs))
            for k in sorted(required - in_p):
                self.narrow(
                    Unsupported("oneOf", "object alternatives that may overlap", path),
                    f"an object of another alternative is excluded by the absence of its required key {k!r}",
                )
                return constrain(objs=(ObjAtom(props=((k, self.false_ref),)),))
        with self.exact():
            return restrict_to(self.alg.complement(q, "oneOf", path), f)

    def _if(self, schema: dict, base: str, path: str) -> Shape:
        cond_ref = self._sub(schema, "if", base, path)
        then = self.shape(self._sub(schema, "then", base, path)) if "then" in schema else TOP
        other = self.shape(self._sub(schema, "else", base, path)) if "else" in schema else TOP
        return join(meet(self.shape(cond_ref), then), meet(self.complement(cond_ref, "if", path), other))

    def _dynamic_ref(self, schema: dict, key: str, base: str, path: str) -> Shape:
        ref = schema[key]
        anchors = self._dynamic_anchors()
        if key == "$recursiveRef" and ref == "#" and not anchors.get("$recursiveAnchor"):
            return self.shape(self._resolve("#", base, path))
        if key == "$dynamicRef" and isinstance(ref, str) and "#" in ref:
            name = ref.split("#", 1)[1]
            if anchors.get(name, 0) <= 1:
                return self.shape(self._resolve(ref, base, path))
        raise Unsupported(key, "dynamic scoping with several candidate anchors is not supported", path)

    def _dynamic_anchors(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        stack = [self.root]
        while stack:
            s = stack.pop()
            if isinstance(s, dict):
                if isinstance(s.get("$dynamicAnchor"), str):
                    counts[s["$dynamicAnchor"]] = counts.get(s["$dynamicAnchor"], 0) + 1
                if s.get("$recursiveAnchor") is True:
                    counts["$recursiveAnchor"] = counts.get("$recursiveAnchor", 0) + 1
                stack.extend(s.values())
            elif isinstance(s, list):
                stack.extend(s)
        return counts

    def _unevaluated(self, schema: dict, key: str, other: str, base: str, path: str) -> Shape:
        value = schema[key]
        if value is True or value == {}:
            return TOP
        applicators = {"allOf", "anyOf", "oneOf", "not", "if", "$ref", "$dynamicRef", "dependentSchemas", "contains"}
        if other in schema or (other == "items" and "items" in schema):
            return TOP  # everything was evaluated already
        if applicators & set(schema):
            raise Unsupported(key, "only supported without in-place applicators (allOf/anyOf/oneOf/$ref/if/...)", path)
        if key == "unevaluatedProperties":
            props = frozenset(schema.get("properties", {}))
            trees = frozenset(pattern_language(p) for p in schema.get("patternProperties", {}))
            ref = self._sub(schema, key, base, path)
            return constrain(objs=(ObjAtom(forall=((KeyLang(outside=trees, names=props), ref),)),))
        prefix_len = len(schema.get("prefixItems", [])) if self.draft >= 2020 else 0
        ref = self._sub(schema, key, base, path)
        return constrain(arrs=(ArrAtom(prefix=(TRUE_REF,) * prefix_len, items=ref),))
