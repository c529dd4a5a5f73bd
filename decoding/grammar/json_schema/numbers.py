"""Numeric constraints: one conjunction of bounds, ``multipleOf`` and value sets, and its regex.

A :class:`NumAtom` is a set of numbers described symbolically; unions are lists of atoms.
Reasoning (intersection, complement, emptiness, membership) is on values, in exact rational
arithmetic. Spelling a set as text (:meth:`NumAtom.tree`) gives every decimal numeral
``-?(0|[1-9][0-9]*)(\\.[0-9]+)?`` whose value is in the set (fraction digits may end in zeros;
``-0`` is not written); exponents are written only for the unconstrained ``number``.

Bounds follow Python ``jsonschema``'s float comparisons where they differ from the exact ones:
an exclusive bound ``b`` of a ``number`` is enforced as the inclusive bound at the double next to
``b``, so a numeral that rounds to ``b`` is never accepted. ``multipleOf`` follows the spec's
exact decimal arithmetic (``jsonschema`` divides binary floats; 0.07 is a multiple of 0.01 here).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

from decoding.grammar.json_schema import automaton as fa
from decoding.grammar.json_schema.hashing import cached_hash
from decoding.grammar.json_schema.regex_ast import (
    EPS,
    NOTHING,
    Chars,
    Node,
    alt,
    cat,
    literal,
    opt,
    rep,
)

MAX_ENUMERATED = 1000  # multiples of a bounded range are listed when there are at most this many
DIG = Chars(((48, 57),))
NZ = Chars(((49, 57),))
ANY_FRAC = opt(cat(literal("."), rep(DIG, 1, None)))
EXPONENT = cat(Chars(((69, 69), (101, 101))), opt(Chars(((43, 43), (45, 45)))), rep(DIG, 1, None))
INT_SYNTAX = alt(literal("0"), cat(NZ, rep(DIG, 0, None)))
TOP_NUMBER = cat(opt(literal("-")), INT_SYNTAX, ANY_FRAC, opt(EXPONENT))
TOP_INTEGER = cat(opt(literal("-")), INT_SYNTAX)


def to_fraction(x: int | float) -> Fraction:
    """The decimal value a schema number was written with (floats via their shortest repr)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or (isinstance(x, float) and not math.isfinite(x)):
        raise ValueError(f"expected a finite number, got {x!r}")
    return Fraction(x) if isinstance(x, int) else Fraction(repr(x))


def decimal_text(v: Fraction) -> str:
    """Exact decimal numeral of ``v`` (a finite decimal) without trailing fraction zeros."""
    sign = "-" if v < 0 else ""
    v = abs(v)
    n, d = v.numerator, v.denominator
    k = 0
    while (10**k) % d:
        k += 1
    digits = str(n * 10**k // d).rjust(k + 1, "0")
    ip, fp = (digits[:-k], digits[-k:]) if k else (digits, "")
    fp = fp.rstrip("0")
    return sign + ip + ("." + fp if fp else "")


# --- trees over decimal numerals --------------------------------------------------------------
def _fixed_len_range(x: str, y: str) -> Node:
    """Digit strings of length ``len(x)`` between ``x`` and ``y`` (inclusive, ``x <= y``)."""
    if x == y:
        return literal(x)
    if set(x) == {"0"} and set(y) == {"9"}:
        return rep(DIG, len(x), len(x))
    if len(x) == 1:
        return Chars(((ord(x), ord(y)),))
    if x[0] == y[0]:
        return cat(literal(x[0]), _fixed_len_range(x[1:], y[1:]))
    parts = [cat(literal(x[0]), _fixed_len_range(x[1:], "9" * (len(x) - 1)))]
    if ord(y[0]) - ord(x[0]) > 1:
        parts.append(cat(Chars(((ord(x[0]) + 1, ord(y[0]) - 1),)), rep(DIG, len(x) - 1, len(x) - 1)))
    parts.append(cat(literal(y[0]), _fixed_len_range("0" * (len(y) - 1), y[1:])))
    return alt(*parts)


def int_range(lo: int, hi: int | None) -> Node:
    """Canonical numerals of the integers ``lo..hi`` (``lo >= 0``; ``hi=None``: unbounded)."""
    if hi is not None and hi < lo:
        return NOTHING
    parts = []
    if lo == 0:
        parts.append(literal("0"))
        lo = 1
    length = len(str(lo))
    while hi is None or lo <= hi:
        top = 10**length - 1
        if hi is None and lo == 10 ** (length - 1):
            parts.append(cat(NZ, rep(DIG, length - 1, None)))
            break
        end = top if hi is None else min(hi, top)
        parts.append(_fixed_len_range(str(lo), str(end)))
        lo, length = top + 1, length + 1
    return alt(*parts)


def _frac_ge(s: str, strict: bool) -> Node:
    """Non-empty digit strings ``t`` with ``0.t >= 0.s`` (``>`` if strict); ``s`` has no trailing zero."""
    d = ord(s[0]) - 48
    higher = cat(Chars(((49 + d, 57),)), rep(DIG, 0, None)) if d < 9 else NOTHING
    if len(s) == 1:
        tail = cat(rep(DIG, 0, None), NZ, rep(DIG, 0, None)) if strict else rep(DIG, 0, None)
    else:
        tail = _frac_ge(s[1:], strict)
    return alt(higher, cat(literal(s[0]), tail))


def _frac_le(s: str, strict: bool) -> Node:
    """Non-empty digit strings ``t`` with ``0.t <= 0.s`` (``<`` if strict); ``s`` has no trailing zero."""
    d = ord(s[0]) - 48
    lower = cat(Chars(((48, 47 + d),)), rep(DIG, 0, None)) if d > 0 else NOTHING
    if len(s) == 1:
        tail = NOTHING if strict else rep(literal("0"), 0, None)
    else:
        tail = alt(EPS, _frac_le(s[1:], strict))
    return alt(lower, cat(literal(s[0]), tail))


def _frac_text(v: Fraction) -> str:
    t = decimal_text(v - math.floor(v))
    return t[2:] if "." in t else ""


def _at_least(a: Fraction, strict: bool) -> Node:
    """Numerals of non-negative values ``>= a`` (``> a``), ``a >= 0``."""
    n = math.floor(a)
    fa_ = _frac_text(a)
    if not fa_:
        same = cat(literal("."), rep(DIG, 0, None), NZ, rep(DIG, 0, None)) if strict else ANY_FRAC
    else:
        same = cat(literal("."), _frac_ge(fa_, strict))
    return alt(cat(literal(str(n)), same), cat(int_range(n + 1, None), ANY_FRAC))


def _at_most(b: Fraction, strict: bool) -> Node:
    """Numerals of non-negative values ``<= b`` (``< b``), ``b >= 0``."""
    n = math.floor(b)
    fb = _frac_text(b)
    if not fb:
        same = NOTHING if strict else opt(cat(literal("."), rep(literal("0"), 1, None)))
    else:
        same = opt(cat(literal("."), _frac_le(fb, strict)))
    below = cat(int_range(0, n - 1), ANY_FRAC) if n > 0 else NOTHING
    return alt(below, cat(literal(str(n)), same))


def _magnitude(a: Fraction, a_strict: bool, b: Fraction | None, b_strict: bool) -> Node:
    """Numerals (no sign) of values in ``[a, b]`` with the given strictness, ``0 <= a``."""
    lower = _at_least(a, a_strict)
    if b is None:
        return lower
    if b < a or (b == a and (a_strict or b_strict)):
        return NOTHING
    if math.floor(a) < math.floor(b):
        na, nb = math.floor(a), math.floor(b)
        fa_, fb = _frac_text(a), _frac_text(b)
        parts = [cat(int_range(na + 1, nb - 1), ANY_FRAC)]
        if not fa_:
            parts.append(
                cat(literal(str(na)), cat(literal("."), rep(DIG, 0, None), NZ, rep(DIG, 0, None)) if a_strict else ANY_FRAC)
            )
        else:
            parts.append(cat(literal(str(na)), literal("."), _frac_ge(fa_, a_strict)))
        if not fb:
            parts.append(cat(literal(str(nb)), NOTHING if b_strict else opt(cat(literal("."), rep(literal("0"), 1, None)))))
        else:
            parts.append(cat(literal(str(nb)), opt(cat(literal("."), _frac_le(fb, b_strict)))))
        return alt(*parts)
    return fa.to_tree(fa.intersect(fa.determinize(lower), fa.determinize(_at_most(b, b_strict))))


def interval_tree(
    lo: Fraction | None, lo_excl: bool, hi: Fraction | None, hi_excl: bool, integer: bool
) -> Node:
    """Numerals of the values in the interval (``integer``: integers only, without fraction)."""
    if integer:
        ilo = None if lo is None else (int(lo) + 1 if lo_excl and lo.denominator == 1 else math.ceil(lo))
        ihi = None if hi is None else (int(hi) - 1 if hi_excl and hi.denominator == 1 else math.floor(hi))
        parts = []
        if ilo is None or ilo < 0:
            neg_lo = 1 if ihi is None or ihi >= 0 else -ihi
            parts.append(cat(literal("-"), int_range(neg_lo, None if ilo is None else -ilo)))
        if ihi is None or ihi >= 0:
            parts.append(int_range(max(ilo or 0, 0), ihi))
        return alt(*parts)
    parts = []
    if lo is None or lo < 0:
        if hi is not None and hi < 0:
            m_lo, m_lo_strict = -hi, hi_excl
        else:
            m_lo, m_lo_strict = Fraction(0), True
        m_hi = None if lo is None else -lo
        parts.append(cat(literal("-"), _magnitude(m_lo, m_lo_strict, m_hi, lo_excl)))
    if hi is None or hi > 0 or (hi == 0 and not hi_excl):
        if lo is None or lo < 0:
            a, a_strict = Fraction(0), False
        else:
            a, a_strict = lo, lo_excl
        parts.append(_magnitude(a, a_strict, hi, hi_excl))
    return alt(*parts)


def value_tree(v: Fraction, integer_syntax: bool) -> Node:
    """Every numeral of the value ``v`` (trailing fraction zeros allowed unless ``integer_syntax``)."""
    text = decimal_text(v)
    if integer_syntax:
        return literal(text) if v.denominator == 1 else NOTHING
    zeros = rep(literal("0"), 0, None)
    if "." in text:
        return cat(literal(text), zeros)
    return cat(literal(text), opt(cat(literal("."), rep(literal("0"), 1, None))))


def multiple_tree(q: Fraction) -> Node:
    """Numerals (any sign) of the multiples of ``q > 0`` (a finite decimal)."""
    d = 0
    while (q * 10**d).denominator != 1:
        d += 1
    p = int(q * 10**d)
    if p > 1000 or d > 30:
        raise fa.TooLarge(f"multipleOf {decimal_text(q)} has no small regular expression")
    # DFA states: 0 start, 1 after '-', then ('i', r) integer part, ('z',) integer part '0',
    # ('f', r, k) k fraction digits read (k <= d), ('x',) fraction digits beyond d (zeros only)
    index: dict[tuple, int] = {}
    keys: list[tuple] = []

    def sid(key: tuple) -> int:
        if key not in index:
            index[key] = len(keys)
            keys.append(key)
        return index[key]

    sid(("s",))
    sid(("-",))
    trans: list[list[tuple[int, int, int]]] = []
    accept: list[bool] = []
    i = 0
    while i < len(keys):
        key = keys[i]
        row: list[tuple[int, int, int]] = []
        kind = key[0]
        if kind in ("s", "-"):
            if kind == "s":
                row.append((45, 45, sid(("-",))))
            row.append((48, 48, sid(("z",))))
            for dgt in range(1, 10):
                row.append((48 + dgt, 48 + dgt, sid(("i", dgt % p))))
            acc = False
        elif kind in ("i", "z"):
            r = key[1] if kind == "i" else 0
            if kind == "i":
                for dgt in range(10):
                    row.append((48 + dgt, 48 + dgt, sid(("i", (r * 10 + dgt) % p))))
            row.append((46, 46, sid(("dot", r))))
            acc = (r * 10**d) % p == 0
        elif kind == "dot":
            r = key[1]
            for dgt in range(10):
                row.append((48 + dgt, 48 + dgt, sid(("f", (r * 10 + dgt) % p, 1) if d >= 1 else ("x", dgt == 0, r))))
            acc = False
        elif kind == "f":
            r, k = key[1], key[2]
            for dgt in range(10):
                nxt = ("f", (r * 10 + dgt) % p, k + 1) if k < d else ("x", dgt == 0, r)
                row.append((48 + dgt, 48 + dgt, sid(nxt)))
            acc = (r * 10 ** (d - k)) % p == 0
        else:  # ("x", ok, r): beyond d digits; ok = every extra digit was 0
            ok, r = key[1], key[2]
            row.append((48, 48, sid(("x", ok, r))))
            for dgt in range(1, 10):
                row.append((48 + dgt, 48 + dgt, sid(("x", False, r))))
            acc = ok and r % p == 0
        trans.append(sorted(row))
        accept.append(acc)
        i += 1
    return fa.to_tree(fa.DFA([fa._merge(r) for r in trans], accept))


def float_safe_upper(b: Fraction, exclusive: bool, digits: int = 20) -> Fraction:
    """An inclusive bound ``c`` such that every numeral ``x <= c`` parses to a double that passes
    ``x <= b`` (``x < b`` if ``exclusive``) in Python's float comparison (``jsonschema``).

    ``b`` is the decimal a schema number was written with; Python compares an instance with a
    fraction or exponent as a double (integer numerals as exact ints) with the schema's float
    (or exact int). Rounding is monotone, so ``x <= c`` with ``c <= b`` a decimal
    that rounds to a double ``t`` passing the test is enough; ``c`` keeps at most ``digits``
    fraction digits (a numeral tree is as deep as its bound has digits).
    """
    if not exclusive and (b.denominator != 1 or abs(b) <= 2**53):
        return b  # the double of b is b's own float (or b is an exact small integer)
    t = math.nextafter(float(b), -math.inf)
    if not exclusive and Fraction(float(b)) <= b:
        t = float(b)
    c = Fraction(repr(t))
    if (c * 10**digits).denominator != 1 or c > b or (exclusive and c == b):
        c = Fraction(math.floor(Fraction(t) * 10**digits), 10**digits)  # <= t < b (or <= b)
    return c  # integer numerals parse to exact ints: c <= b keeps them valid too


def _lcm(a: Fraction, b: Fraction) -> Fraction:
    return Fraction(math.lcm(a.numerator * b.denominator, b.numerator * a.denominator), a.denominator * b.denominator)


# --- the atom ----------------------------------------------------------------------------------
@cached_hash
@dataclass(frozen=True)
class NumAtom:
    """A set of numbers: the conjunction of every field (``values=None``: no finite list)."""

    integer: bool = False
    lo: Fraction | None = None
    lo_excl: bool = False
    hi: Fraction | None = None
    hi_excl: bool = False
    multiples: tuple[Fraction, ...] = ()
    values: frozenset[Fraction] | None = None
    not_values: frozenset[Fraction] = field(default_factory=frozenset)
    nonint: bool = False
    not_multiples: tuple[Fraction, ...] = ()

    def is_top(self) -> bool:
        return self == NumAtom()

    def contains(self, v: Fraction) -> bool:
        """Whether the value ``v`` is in the set (exact)."""
        if self.values is not None and v not in self.values:
            return False
        if v in self.not_values:
            return False
        if self.integer and v.denominator != 1:
            return False
        if self.nonint and v.denominator == 1:
            return False
        if self.lo is not None and (v < self.lo or (self.lo_excl and v == self.lo)):
            return False
        if self.hi is not None and (v > self.hi or (self.hi_excl and v == self.hi)):
            return False
        if any((v / q).denominator != 1 for q in self.multiples):
            return False
        return not any((v / q).denominator == 1 for q in self.not_multiples)

    def intersect(self, o: NumAtom) -> NumAtom:
        lo, lo_excl = self.lo, self.lo_excl
        if o.lo is not None and (lo is None or o.lo > lo or (o.lo == lo and o.lo_excl)):
            lo, lo_excl = o.lo, o.lo_excl
        hi, hi_excl = self.hi, self.hi_excl
        if o.hi is not None and (hi is None or o.hi < hi or (o.hi == hi and o.hi_excl)):
            hi, hi_excl = o.hi, o.hi_excl
        values = self.values if o.values is None else o.values if self.values is None else self.values & o.values
        return NumAtom(
            self.integer or o.integer,
            lo,
            lo_excl,
            hi,
            hi_excl,
            tuple(dict.fromkeys(self.multiples + o.multiples)),
            values,
            self.not_values | o.not_values,
            self.nonint or o.nonint,
            tuple(dict.fromkeys(self.not_multiples + o.not_multiples)),
        )

    def complement(self) -> list[NumAtom]:
        """Atoms whose union is every number not in this set (De Morgan)."""
        out = []
        if self.integer:
            out.append(NumAtom(nonint=True))
        if self.nonint:
            out.append(NumAtom(integer=True))
        if self.lo is not None:
            out.append(NumAtom(hi=self.lo, hi_excl=not self.lo_excl))
        if self.hi is not None:
            out.append(NumAtom(lo=self.hi, lo_excl=not self.hi_excl))
        out.extend(NumAtom(not_multiples=(q,)) for q in self.multiples)
        out.extend(NumAtom(multiples=(q,)) for q in self.not_multiples)
        if self.values is not None:
            out.append(NumAtom(not_values=self.values))
        if self.not_values:
            out.append(NumAtom(values=self.not_values))
        return out

    def _finite(self, first_only: bool = False) -> list[Fraction] | None:
        """The members when the set is finite and small enough to list, else ``None``
        (``first_only``: only the smallest member, or none: what an emptiness test needs)."""
        if self.values is not None:
            return sorted(v for v in self.values if self.contains(v))
        if self.lo is None or self.hi is None:
            return None
        step = Fraction(1) if self.integer else None
        for q in self.multiples:
            step = q if step is None else _lcm(step, q)
        if step is None:
            return [] if self.lo > self.hi or (self.lo == self.hi and (self.lo_excl or self.hi_excl)) else None
        first = math.ceil(self.lo / step)
        last = math.floor(self.hi / step)
        if last - first + 1 > MAX_ENUMERATED:
            return None
        members = (k * step for k in range(first, last + 1) if self.contains(k * step))
        if first_only:
            return list(itertools.islice(members, 1))
        return list(members)

    def is_empty(self) -> bool:
        """True only when the set is certainly empty."""
        if self.integer and self.nonint:
            return True
        if self.lo is not None and self.hi is not None:
            if self.lo > self.hi or (self.lo == self.hi and (self.lo_excl or self.hi_excl)):
                return True
        finite = self._finite(first_only=True)
        return finite is not None and not finite

    def tree(self, integer_syntax: bool = False, float_bounds: bool = True) -> Node:
        """Numerals of the set (see the module docstring); ``integer_syntax``: no fraction at all.

        Raises:
            fa.TooLarge: a ``multipleOf`` whose numerals have no small regular expression.
        """
        integer_syntax = integer_syntax or self.integer
        if self.is_top():
            return TOP_INTEGER if integer_syntax else TOP_NUMBER
        finite = self._finite()
        if finite is not None:
            return alt(*(value_tree(v, integer_syntax) for v in finite))
        lo, lo_excl, hi, hi_excl = self.lo, self.lo_excl, self.hi, self.hi_excl
        if float_bounds and not integer_syntax:
            if hi is not None:
                hi, hi_excl = float_safe_upper(hi, hi_excl), False
            if lo is not None:
                lo, lo_excl = -float_safe_upper(-lo, lo_excl), False
        node = interval_tree(lo, lo_excl, hi, hi_excl, integer_syntax)
        extra = []
        if self.nonint:
            extra.append((cat(opt(literal("-")), INT_SYNTAX, literal("."), rep(DIG, 0, None), NZ, rep(DIG, 0, None)), True))
        extra.extend((multiple_tree(q), True) for q in self.multiples)
        extra.extend((multiple_tree(q), False) for q in self.not_multiples)
        extra.extend((value_tree(v, False), False) for v in self.not_values)
        if not extra:
            return node
        d = fa.determinize(node)
        for t, keep in extra:
            d2 = fa.determinize(t)
            d = fa.intersect(d, d2) if keep else fa.difference(d, d2)
        return fa.to_tree(d)

