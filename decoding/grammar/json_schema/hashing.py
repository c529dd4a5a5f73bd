"""Frozen dataclasses whose hash (and, for trees, ``repr``) is computed once per object.

The converter's values (regex trees, shapes, subschema handles, key languages) are nested frozen
dataclasses used as dict keys and set members over and over; the hash ``@dataclass(frozen=True)``
generates recomputes the hash of every nested field each time (a tree of a thousand nodes costs a
thousand calls per lookup). :func:`cached_hash` keeps the generated function, so the value is the
same, and stores it on the object the first time it is asked for. :func:`cached_repr` does the
same for ``repr`` (regex trees are sorted by it, and a tree's repr walks the whole tree).
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound=type)


def cached_hash(cls: T) -> T:
    """Wrap the ``__hash__`` that ``@dataclass(frozen=True)`` generated for ``cls`` (apply it
    above the dataclass decorator): same value, computed once per object and kept in its
    ``__dict__`` (not a field, so equality, ``repr`` and ``replace`` ignore it)."""
    return _computed_once(cls, "__hash__", "_hash", "cached_hash")


def cached_repr(cls: T) -> T:
    """Wrap the ``__repr__`` that ``@dataclass`` generated for ``cls`` (apply it above the
    dataclass decorator): same text, computed once per object (for immutable objects only)."""
    return _computed_once(cls, "__repr__", "_repr", "cached_repr")


def _computed_once(cls: T, method: str, slot: str, decorator: str) -> T:
    generated = cls.__dict__.get(method)
    if generated is None:
        raise TypeError(f"{cls.__name__} has no generated {method}: apply @{decorator} over @dataclass(frozen=True)")

    def once(self):
        d = self.__dict__
        value = d.get(slot)
        if value is None:
            value = d[slot] = generated(self)
        return value

    once.__name__, once.__doc__ = method, generated.__doc__
    setattr(cls, method, once)
    return cls
