"""``@frozen``: a frozen dataclass that costs half as much to define.

Tusk's results and records are frozen dataclasses (127 of them), and a command loads a few
dozen before it does anything: ``tusk list repo`` defined 69. On Python 3.11 ``dataclass``
writes each generated method as source text and compiles it on its own (``__init__``,
``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``: six compiles,
~0.5 ms per class on this project's machines), and it also computes ``inspect.signature``
for a class with no docstring; together ~37 ms of a 0.3 s command (measured in-process).

``@frozen`` is ``dataclass(frozen=True)`` itself, fields, ``__init__``, frozenness,
``replace``, ``asdict``, ``fields``, pickling and ``__match_args__`` included, except that
``__repr__``, ``__eq__`` and ``__hash__`` are three functions shared by every such class
(the same results: fields compared and hashed as one tuple, ``compare``, ``hash`` and
``repr`` of each field honoured, the same text as dataclasses' repr). Equality and hashing
read the fields with one ``operator.attrgetter`` made per class: a call costs ~80 ns more
than the generated method's (3 fields: ``==`` 202 vs 120 ns, ``hash`` 197 vs 131 ns, measured
with timeit), which no hot path pays (trees are compared by their nodes' and files' hashes,
not by records' equality). Python 3.13 compiles a dataclass's methods in one go; this module
can go when Tusk needs 3.13.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, cast, dataclass_transform, overload

T = TypeVar("T", bound=type)


def _fields_key(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    if names:
        return attrgetter(*names)
    return lambda obj: ()


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        key = self.__class__.__value_compare__
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__class__.__value_hash__(self))


def _repr(self: Any) -> str:
    cls = self.__class__
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in cls.__value_repr__)
    return f"{cls.__qualname__}({inner})"


@overload
def frozen(cls: T, /) -> T: ...
@overload
def frozen(*, slots: bool = False) -> Callable[[T], T]: ...


@dataclass_transform(frozen_default=True)
def frozen(cls: T | None = None, /, *, slots: bool = False) -> T | Callable[[T], T]:
    """``@dataclass(frozen=True[, slots=True])``, defined in half the time (module doc)."""

    def wrap(c: T) -> T:
        if c.__doc__ is None:  # else dataclass builds one from inspect.signature
            c.__doc__ = c.__name__
        made: Any = dataclasses.dataclass(frozen=True, slots=slots, eq=False, repr=False)(c)
        fields = dataclasses.fields(made)
        compared = tuple(f.name for f in fields if f.compare)
        hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
        made.__value_compare__ = staticmethod(_fields_key(compared))
        made.__value_hash__ = staticmethod(_fields_key(hashed))
        made.__value_repr__ = tuple(f.name for f in fields if f.repr)
        made.__eq__ = _eq
        made.__hash__ = _hash
        made.__repr__ = _repr
        return cast(T, made)

    return wrap if cls is None else wrap(cls)


_FIELDS: dict[type, tuple[str, ...]] = {}
_ATOMS = frozenset({str, int, float, bool, type(None)})


def field_names(cls: type) -> tuple[str, ...]:
    """The field names of dataclass ``cls``, in order (cached per class)."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def plain(obj: Any) -> Any:
    """A result object (or list of them) as JSON data, as ``dataclasses.asdict`` gives it
    (lists for tuples), but quicker: ``asdict`` deep-copies every value, which dominated
    listing thousands of files. Every model's ``to_dict`` and the API's responses use it."""
    cls = type(obj)
    if cls in _ATOMS:
        return obj
    names = _FIELDS.get(cls)
    if names is None and dataclasses.is_dataclass(obj):
        names = field_names(cls)
    if names is not None:
        out = {}
        for name in names:
            value = getattr(obj, name)
            out[name] = value if type(value) in _ATOMS else plain(value)
        return out
    if cls is list or cls is tuple:
        return [x if type(x) in _ATOMS else plain(x) for x in obj]
    if cls is dict:
        return {k: v if type(v) in _ATOMS else plain(v) for k, v in obj.items()}
    return obj
