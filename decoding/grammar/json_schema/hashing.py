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
    field_hash = cls.__dict__.get("__hash__")
    if field_hash is None:
        raise TypeError(
            f"{cls.__name__} has no generated __hash__: apply @cached_hash over @dataclass(frozen=True)"
        )

    def __hash__(self) -> int:
        d = self.__dict__
        h = d.get("_hash")
        if h is None:
            h = d["_hash"] = field_hash(self)
        return h

    __hash__.__doc__ = field_hash.__doc__
    cls.__hash__ = __hash__  # type: ignore[method-assign]
    return cls


def cached_repr(cls: T) -> T:
    """Wrap the ``__repr__`` that ``@dataclass`` generated for ``cls`` (apply it above the
    dataclass decorator): same text, computed once per object (for immutable objects only)."""
    field_repr = cls.__dict__.get("__repr__")
    if field_repr is None:
        raise TypeError(f"{cls.__name__} has no generated __repr__: apply @cached_repr over @dataclass")

    def __repr__(self) -> str:
        d = self.__dict__
        r = d.get("_repr")
        if r is None:
            r = d["_repr"] = field_repr(self)
        return r

    __repr__.__doc__ = field_repr.__doc__
    cls.__repr__ = __repr__  # type: ignore[method-assign]
    return cls
