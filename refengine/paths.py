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

:func:`compile_path` returns a :class:`PathReader` holding two closures: ``one``
reads a single payload (``None`` is no value) and ``many`` reads a list of payloads
with C-level pipelines, returning only the values found (order kept); it
accepts any iterable of payloads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from itertools import compress, repeat
from operator import is_
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
    many: Callable[[Iterable[Payload]], list[Any]]
    """Read many payloads: the values found, in order; no-value entries dropped."""


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


def _leaves(payloads: Iterable[Payload], keys: tuple[str, ...]) -> list[Any]:
    # C-level pipelines only (map / compress / repeat): per path part, keep the
    # objects and step into them. Payloads themselves are always objects (dicts).
    first, *rest = keys
    nodes: list[Any] = list(map(dict.get, payloads, repeat(first)))
    for key in rest:
        objects = compress(nodes, map(is_, map(type, nodes), repeat(dict)))
        nodes = list(map(dict.get, objects, repeat(key)))
    return nodes


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


def _numeric_many(leaves: list[Any]) -> list[float]:
    kinds = list(map(type, leaves))
    floats: list[float] = list(compress(leaves, map(is_, kinds, repeat(float))))
    if not kinds.count(int):
        return floats  # the common case: every number is a float token
    return [v for v in map(numeric_value, leaves) if v is not None]


def _boolean_many(leaves: list[Any]) -> list[float]:
    return [1.0 if x else 0.0 for x in leaves if x is True or x is False]


def compile_path(path: str, value_type: ValueType) -> PathReader:
    """Compile ``path`` for ``value_type`` once; use the reader for every row.

    >>> reader = compile_path("output.score", "numeric")
    >>> reader.one({"output": {"score": 3}}), reader.one({"output": {"score": "0.5"}})
    (3.0, None)
    >>> reader.many([{"output": {"score": 0.5}}, {"output": [1]}, {"output": {"score": True}}])
    [0.5]
    """
    keys = split_path(path)
    convert: Callable[[Any], Any]
    many_leaves: Callable[[list[Any]], list[Any]]
    if value_type == "numeric":
        convert, many_leaves = numeric_value, _numeric_many
    elif value_type == "boolean":
        convert, many_leaves = boolean_value, _boolean_many
    else:
        convert = categorical_value

        def many_leaves(leaves: list[Any]) -> list[Any]:
            return [categorical_value(x) for x in leaves]

    if len(keys) == 1:
        (key,) = keys

        def one(payload: Payload) -> Any:
            return convert(payload.get(key))

    else:

        def one(payload: Payload) -> Any:
            return convert(_walk(payload, keys))

    if value_type == "categorical":

        def many(payloads: Iterable[Payload]) -> list[Any]:
            # Every row has a value; a path that stops early reads as ''.
            return [one(p) for p in payloads]

    else:

        def many(payloads: Iterable[Payload]) -> list[Any]:
            return many_leaves(_leaves(payloads, keys))

    return PathReader(path, value_type, keys, one, many)
