"""A compact, read-only mapping for the scorer map columns of a stored row.

A ``dict`` of one to five entries takes 184 bytes whatever its content: its hash
table never has fewer than eight slots. Scorer maps are that small, and their keys
repeat across millions of rows (``{"_rating_": 0.87}``), so a stored row keeps
each one as a :class:`FrozenMap` instead: a tuple of keys shared by every map with
the same keys in the same order, and a tuple of values — 96 bytes for one entry,
8 more per further entry.

A :class:`FrozenMap` is a :class:`collections.abc.Mapping`: it iterates in the
order its source had, compares equal to any mapping with the same items (order
ignored, as for ``dict``), and cannot be changed. A lookup scans the keys,
``O(len)``; scorer maps hold a handful of keys, where a scan is as fast as a hash.
Iterating its items or values walks the two tuples side by side, ``O(len)`` in
all (the ``Mapping`` mixins would look each key up: quadratic in a large map).
"""

from __future__ import annotations

import sys
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from functools import lru_cache
from operator import attrgetter
from typing import Any, TypeVar

V = TypeVar("V")


class FrozenMap(Mapping[str, V]):
    """An immutable ``str``-keyed mapping stored as shared keys plus values.

    >>> m = FrozenMap({"_rating_": 0.5, "quality": 1.0})
    >>> m["quality"], m.get("missing"), list(m), len(m)
    (1.0, None, ['_rating_', 'quality'], 2)
    >>> m == {"quality": 1.0, "_rating_": 0.5}, dict(m)
    (True, {'_rating_': 0.5, 'quality': 1.0})
    """

    __slots__ = ("_keys", "_values")

    _keys: tuple[str, ...]
    _values: tuple[V, ...]

    def __init__(self, mapping: Mapping[str, V] | None = None) -> None:
        """A copy of ``mapping`` (keys interned and shared). ``O(len(mapping))``."""
        if not mapping:
            self._keys, self._values = (), ()
            return
        self._keys = shared_keys(tuple(mapping))
        self._values = tuple(mapping.values())

    def __getitem__(self, key: str) -> V:
        keys = self._keys
        if key in keys:
            return self._values[keys.index(key)]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        keys = self._keys
        if key in keys:
            return self._values[keys.index(key)]
        return default

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> ItemsView[str, V]:
        """The ``(key, value)`` pairs in order. ``O(1)``; iterating them ``O(len)``."""
        return _Items(self)

    def values(self) -> ValuesView[V]:
        """The values in order. ``O(1)``; iterating them ``O(len)``."""
        return _Values(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap) and other._keys is self._keys:
            return self._values == other._values  # shared keys: the same order
        if not isinstance(other, Mapping):
            return NotImplemented
        return self._as_dict() == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # equal to dicts, which are unhashable

    def __repr__(self) -> str:
        return f"FrozenMap({self._as_dict()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._as_dict(),))

    def _as_dict(self) -> dict[str, V]:
        return dict(zip(self._keys, self._values, strict=True))


class _Items(ItemsView[str, V]):
    __slots__ = ()
    _mapping: FrozenMap[V]

    def __iter__(self) -> Iterator[tuple[str, V]]:
        return zip(self._mapping._keys, self._mapping._values, strict=True)


class _Values(ValuesView[V]):
    __slots__ = ()
    _mapping: FrozenMap[V]

    def __iter__(self) -> Iterator[V]:
        return iter(self._mapping._values)


@lru_cache(maxsize=4096)
def shared_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple per distinct key sequence, its strings interned."""
    return tuple(map(sys.intern, keys))


def items_of(maps: Iterable[Mapping[str, V]]) -> tuple[list[tuple[str, ...]], list[tuple[V, ...]]]:
    """Each map's keys and values as two parallel tuples (a :class:`FrozenMap`'s
    own: its keys tuple is shared by every map with the same keys), for the
    column builders that read millions of maps. ``O(len(maps))``; C-level passes
    when every map is a :class:`FrozenMap`."""
    maps = list(maps)
    if set(map(type, maps)) <= {FrozenMap}:  # not isinstance: a subclass may differ
        return list(map(_keys_of, maps)), list(map(_values_of, maps))
    return [tuple(m) for m in maps], [tuple(m.values()) for m in maps]


def distinct_keys(maps: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every key of any of ``maps``. ``O(len(maps))`` C-level steps when every map
    is a :class:`FrozenMap` (its shared keys tuple is read, not iterated), plus
    ``O(k)`` for the ``k`` keys of the distinct key tuples."""
    maps = list(maps)
    if set(map(type, maps)) <= {FrozenMap}:
        return set().union(*set(map(_keys_of, maps)))
    return set().union(*maps)


_keys_of = attrgetter("_keys")
_values_of = attrgetter("_values")

EMPTY: FrozenMap[Any] = FrozenMap()
"""The empty map every row without entries shares."""

__all__ = ["EMPTY", "FrozenMap", "distinct_keys", "items_of", "shared_keys"]
