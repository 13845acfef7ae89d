"""Reading a stats metric out of a stored payload: ``json_path`` compiled once.

Production reads metrics with ClickHouse's ``JSONExtract*`` functions over the stored
payload text; a row's ``payload`` here is exactly ``json.loads`` of that text, so the
rules become (spec/SEMANTICS.md, "Extracting a metric"):

* the path is split on ``.``; every part is an object key — an all-digit part such
  as ``"0"`` is a key too, never an array index;
* a missing key, a non-object on the way, or a value inside an array is "no value";
* ``numeric``: JSON numbers only (``int`` or ``float``, never ``bool``, never a
  string such as ``"0.5"``), read as a float; an integer outside
  ``[-2**63, 2**64 - 1]`` is no value (ClickHouse reads it back as text);
* ``boolean``: JSON ``true`` / ``false`` only, read as ``1.0`` / ``0.0``;
* ``categorical``: never "no value": missing or ``null`` is ``''``, a string is
  itself, anything else is its compact JSON text (``3``, ``0.5``, ``true``,
  ``{"a":1}``). Only ``count`` may be asked of a categorical metric and every row
  has a value, so the rendering of non-strings is never observable.

:func:`compile_path` returns a :class:`PathReader`: ``one`` reads a single payload
(``None`` is no value); for numeric and boolean metrics, ``column`` reads a list of
payloads into an ``array('d')``, one entry per payload, NaN where it has no value
(a stored payload never holds NaN: create refuses it), and :func:`found` keeps the
values of such a column, in order.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable, Sequence
from itertools import filterfalse, repeat
from math import isnan
from typing import Any, Literal, NamedTuple

ValueType = Literal["numeric", "boolean", "categorical"]

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""The integer tokens ClickHouse reads as numbers (Int64 ∪ UInt64)."""

Payload = dict[str, Any]


class PathReader(NamedTuple):
    """A compiled ``json_path`` for one value type."""

    path: str
    value_type: ValueType
    keys: tuple[str, ...]
    one: Callable[[Payload], Any]
    """Read one payload: a float (numeric/boolean), a str (categorical), or None."""
    column: Callable[[Sequence[Payload]], array[float]] | None
    """Read many payloads: one float each, NaN for no value (None: categorical,
    whose values stats never keeps — every row has one)."""


def split_path(path: str) -> tuple[str, ...]:
    """The object keys of ``path``: ``'output.0.a b'`` → ``('output', '0', 'a b')``."""
    return tuple(path.split("."))


def _walk(payload: Payload, keys: tuple[str, ...]) -> Any:
    node: Any = payload
    for key in keys:
        if type(node) is not dict:
            return None
        node = node.get(key)
    return node


def _leaves(payloads: Sequence[Payload], keys: tuple[str, ...]) -> list[Any]:
    # The value at ``keys`` of each payload (None where the path stops early), in
    # order. Payloads themselves are always objects (dicts).
    first, *rest = keys
    nodes: list[Any] = list(map(dict.get, payloads, repeat(first)))
    for key in rest:
        if not any(nodes):
            # Every node is None or another falsy value (an empty object among
            # them), so every one reads None from here: a path longer than the
            # payloads are deep costs their depth, not its length. ``any`` stops
            # at the first truthy node, so the check is free while values remain.
            return [None] * len(nodes)
        nodes = [node.get(key) if type(node) is dict else None for node in nodes]
    return nodes


NO_VALUE = float("nan")
"""A column's entry for a payload without a value."""


def found(column: Iterable[float]) -> list[float]:
    """The values of ``column``, in order: every entry but the NaN ones."""
    return list(filterfalse(isnan, column))


def numeric_value(leaf: Any) -> float | None:
    """The numeric reading of one JSON value (``None``: no value)."""
    kind = type(leaf)
    if kind is float:
        return leaf  # type: ignore[no-any-return]
    if kind is int and INT_MIN <= leaf <= INT_MAX:
        return float(leaf)
    return None


def boolean_value(leaf: Any) -> float | None:
    """The boolean reading of one JSON value: ``1.0``, ``0.0`` or ``None``."""
    if leaf is True:
        return 1.0
    if leaf is False:
        return 0.0
    return None


def categorical_value(leaf: Any) -> str:
    """The categorical reading of one JSON value: never no value."""
    if leaf is None:
        return ""
    if type(leaf) is str:
        return leaf
    return json.dumps(leaf, separators=(",", ":"), ensure_ascii=False)


def _numeric_entry(leaf: Any) -> float:
    value = numeric_value(leaf)
    return NO_VALUE if value is None else value


def _numeric_column(leaves: list[Any]) -> array[float]:
    if set(map(type, leaves)) <= {float}:
        return array("d", leaves)  # the common case: every leaf a float token
    return array("d", map(_numeric_entry, leaves))


def _boolean_column(leaves: list[Any]) -> array[float]:
    return array("d", [1.0 if x is True else 0.0 if x is False else NO_VALUE for x in leaves])


def compile_path(path: str, value_type: ValueType) -> PathReader:
    """Compile ``path`` for ``value_type`` once; use the reader for every row.

    >>> reader = compile_path("output.score", "numeric")
    >>> reader.one({"output": {"score": 3}}), reader.one({"output": {"score": "0.5"}})
    (3.0, None)
    >>> reader.column([{"output": {"score": 0.5}}, {"output": [1]}, {"output": {"score": True}}])
    array('d', [0.5, nan, nan])
    >>> found(_)
    [0.5]
    """
    keys = split_path(path)
    convert: Callable[[Any], Any]
    to_column: Callable[[list[Any]], array[float]] | None
    if value_type == "numeric":
        convert, to_column = numeric_value, _numeric_column
    elif value_type == "boolean":
        convert, to_column = boolean_value, _boolean_column
    else:
        convert, to_column = categorical_value, None

    if len(keys) == 1:
        (key,) = keys

        def one(payload: Payload) -> Any:
            return convert(payload.get(key))

    else:

        def one(payload: Payload) -> Any:
            return convert(_walk(payload, keys))

    column: Callable[[Sequence[Payload]], array[float]] | None = None
    if to_column is not None:
        leaves_to_column = to_column

        def column(payloads: Sequence[Payload]) -> array[float]:
            return leaves_to_column(_leaves(payloads, keys))

    return PathReader(path, value_type, keys, one, column)
