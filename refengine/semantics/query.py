"""The Query language: ``{"$expr": ...}`` compiled to a predicate over stored rows.

spec/SEMANTICS.md, "Query". Production turns an expression into ClickHouse SQL; this
module reproduces what that SQL answers, row by row:

* a field is a column by its API name, ``payload.<dot.path>`` or ``<map>.<key>``
  (:func:`compile_field`); a payload path reads as a **string**, as
  ``toString(JSON_VALUE(payload_dump, path))`` renders it (:func:`json_value`);
* a comparison with a literal casts a payload path or map value by the literal's
  type (:func:`infer_cast`), ``$convert`` casts without inference;
* a comparison with NULL is NULL (unknown), and ``$and`` / ``$or`` / ``$not`` follow
  three-valued logic; a row matches when its condition is true.

Type errors that ClickHouse reports while planning are reported here while
compiling, before any row is read, with production's messages.

Compiling is ``O(size of the expression)``; evaluating one row is ``O(size of the
expression + size of the payload)`` (a payload is parsed at most once per row and
expression, see :func:`_parsed`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from operator import attrgetter
from typing import Any, Literal, NamedTuple

from .. import errors
from ..errors import InvalidRequest, format_message
from ..models import (
    AndOperation,
    ContainsOperation,
    ContainsSpec,
    ContainsTokenOperation,
    ConvertOperation,
    EqOperation,
    GetFieldOperator,
    GteOperation,
    GtOperation,
    InOperation,
    LiteralOperation,
    LteOperation,
    LtOperation,
    NotOperation,
    OrOperation,
    Query,
    SizeOperation,
)
from ..rows import EPOCH, STATUS_ORDER, FeedbackRow

MAX_QUERY_NODES = 10_000
"""Bounded work (SEMANTICS "Bounded work"): operands and operations in one expression."""

MAX_QUERY_DEPTH = 64
"""Bounded work: nesting depth of one expression."""

Kind = Literal[
    "string",  # a String column, or a string literal
    "json",  # a payload path: a string that a literal may cast
    "number",  # a number (literal, $size, $convert to int/double/bool, a float map value)
    "bool",  # a condition (UInt8 0/1 in ClickHouse: a number too)
    "datetime",  # created_at, as epoch milliseconds
    "enum",  # span_status_code, as its Enum8 value
    "array",  # scorer_tags
    "map",  # a whole map column
    "mapstr",  # a value of a Map(String, String) column: NULL when the key is absent
    "null",  # the NULL literal
]

Value = Any
Getter = Callable[[FeedbackRow], Value]


class Compiled(NamedTuple):
    """An operand ready to evaluate: its kind, a getter, and (for a literal) its value."""

    kind: Kind
    get: Getter
    literal: LiteralOperation | None = None
    # For an integer-typed number ($size: UInt64; $convert to int: Int64, to bool:
    # UInt8), its ClickHouse type: a string compared with it must be an integer.
    integer: str | None = None


# --- fields --------------------------------------------------------------------------

STRING_COLUMNS: tuple[str, ...] = (
    "id",
    "project_id",
    "weave_ref",
    "wb_user_id",
    "creator",
    "feedback_type",
    "annotation_ref",
    "runnable_ref",
    "call_ref",
    "trigger_ref",
    "queue_id",
    "span_agent_name",
    "span_agent_version",
    "span_conversation_id",
    "span_trace_id",
    "scorer_trace_id",
)
STRING_MAPS: tuple[str, ...] = ("scorer_tag_reasons", "scorer_rating_reasons")
FLOAT_MAPS: tuple[str, ...] = (
    "scorer_tag_confidences",
    "scorer_ratings",
    "scorer_rating_confidences",
)
MAP_COLUMNS = STRING_MAPS + FLOAT_MAPS
PAYLOAD_NAMES = ("payload", "payload_dump")


@lru_cache(maxsize=8)
def _parsed(payload_dump: str) -> Any:
    # Several payload paths of one expression read the same row in turn: parse once.
    return json.loads(payload_dump)


def split_payload_path(path: str) -> tuple[str, ...]:
    r"""The keys of a payload path: split on ``.``, where ``\.`` is a literal dot.

    >>> split_payload_path(r"output.a\.b.0")
    ('output', 'a.b', '0')
    """
    parts = re.split(r"(?<!\\)\.", path)
    return tuple(part.replace("\\.", ".") for part in parts)


def payload_keys(field: str, path: str) -> tuple[str, ...]:
    r"""The keys of the payload path ``path`` of the field ``field``, each one that
    production's JSON path can address (SEMANTICS "Query / Fields").

    Production pastes every key between double quotes into a ClickHouse JSON path
    (``$."a"."b"``): a key containing ``"`` or ``\`` (after ``\.`` is read as a dot)
    or an empty key (``a..b``) makes a path that ClickHouse cannot parse, or reads
    another key. Such a path is refused (``InvalidRequest``, a Decision: production
    fails in the database).

    >>> payload_keys("payload.a.0", "a.0")
    ('a', '0')
    >>> try:
    ...     payload_keys("payload.a..b", "a..b")
    ... except InvalidRequest as error:
    ...     print(error.reason[:38])
    Cannot read payload path payload.a..b:
    """
    keys = split_payload_path(path)
    if any(not key or '"' in key or "\\" in key for key in keys):
        raise InvalidRequest(format_message(errors.UNADDRESSABLE_PAYLOAD_KEY, field=field))
    return keys


_MISSING = object()


def json_lookup(payload: Any, keys: Sequence[str]) -> Any:
    """The value at ``keys``, or ``_MISSING``. An all-digit key indexes an array and
    only an array: production writes it as ``[i]`` in the JSON path, which never
    reads an object's key (SEMANTICS "Query / Fields")."""
    value = payload
    for key in keys:
        if isinstance(value, dict):
            if key not in value or key.isdigit():
                return _MISSING
            value = value[key]
        elif isinstance(value, list) and key.isdigit():
            index = int(key)
            if index >= len(value):
                return _MISSING
            value = value[index]
        else:
            return _MISSING
    return value


def ch_float(value: float) -> str:
    """A float as ClickHouse prints it: the shorter of fixed and scientific notation
    (ties fixed), from the shortest round-tripping digits.

    >>> [ch_float(x) for x in (5.0, 1000.0, 100000.0, 1e6, 0.0001, -0.0, 0.5)]
    ['5', '1000', '1e+05', '1e+06', '1e-04', '-0', '0.5']
    >>> ch_float(123456789012345.0)
    '123456789012345'
    """
    text = repr(value)
    if "e" not in text and "n" not in text:
        # The common case, 1e-4 <= |x| < 1e16 (or zero): repr is already fixed
        # notation; only its length against the scientific form's needs checking.
        fixed = text[:-2] if text.endswith(".0") else text
        body = fixed.lstrip("-")
        significant = body.replace(".", "").strip("0")
        if not significant:
            return fixed
        sign_width = len(fixed) - len(body)
        shortest_scientific = sign_width + len(significant) + (len(significant) > 1) + 4
        if len(fixed) <= shortest_scientific:
            return fixed
    if not math.isfinite(value):
        return _non_finite(value)
    digits, exponent = _digits(value)
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    fixed = _fixed(digits, exponent)
    scientific = f"{_mantissa(digits)}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return sign + (fixed if len(fixed) <= len(scientific) else scientific)


def _non_finite(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _fixed(digits: str, exponent: int) -> str:
    """Fixed notation of the significant ``digits`` times 10**``exponent``
    (the first digit's place), unsigned."""
    point = exponent + 1  # digits before the decimal point
    if point <= 0:
        return "0." + "0" * (-point) + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _mantissa(digits: str) -> str:
    return digits[0] + ("." + digits[1:] if len(digits) > 1 else "")


def ch_to_string(value: float) -> str:
    """A float as ClickHouse's ``toString`` prints it (what ``$convert`` to ``string``
    gives for a number): the shortest round-tripping digits, in fixed notation when
    the decimal exponent is in ``[-6, 21)``, else ``<digits>e<exponent>`` with no
    ``+`` and no padding. (``JSON_VALUE`` prints numbers otherwise: :func:`ch_float`.)

    >>> [ch_to_string(x) for x in (1e6, 1e-5, 1e-6, 1e-7, 1e21, 0.1, -0.0, 5.0, 1.2345e-7)]
    ['1000000', '0.00001', '0.000001', '1e-7', '1e21', '0.1', '-0', '5', '1.2345e-7']
    """
    if not math.isfinite(value):
        return _non_finite(value)
    digits, exponent = _digits(value)
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if -6 <= exponent < 21:
        return sign + _fixed(digits, exponent)
    return f"{sign}{_mantissa(digits)}e{exponent}"


def ch_field_text(value: float) -> str:
    """A float literal as ClickHouse turns it into a ``String`` to compare it with a
    string in a mixed ``IN`` list: :func:`ch_to_string`, with a trailing ``.`` when
    that is a whole number in fixed notation.

    >>> [ch_field_text(x) for x in (5.0, -0.0, 0.5, 1e21, 1e-7)]
    ['5.', '-0.', '0.5', '1e21', '1e-7']
    """
    text = ch_to_string(value)
    if "." in text or "e" in text or "n" in text:
        return text
    return text + "."


def _digits(value: float) -> tuple[str, int]:
    # repr gives the shortest digits that round-trip; normalise them to
    # (significant digits, decimal exponent of the first one).
    text = repr(abs(value))
    mantissa, _, exp = text.partition("e")
    exponent = int(exp) if exp else 0
    whole, _, frac = mantissa.partition(".")
    frac = frac.rstrip("0") if frac != "0" else ""
    digits = (whole + frac).lstrip("0")
    if not digits:
        return "0", 0
    leading_zeros = len(whole + frac) - len((whole + frac).lstrip("0"))
    exponent += len(whole) - 1 - leading_zeros
    return digits.rstrip("0") or "0", exponent


def render_json_scalar(value: Any) -> str:
    """A JSON value as ``toString(JSON_VALUE(...))`` shows it; an object or array as
    :func:`render_json_compact` writes it.

    >>> [render_json_scalar(v) for v in ("hi", None, True, 5, 5.0, {"a": [1, "é"]})]
    ['hi', 'null', 'true', '5', '5', '{"a":[1,"é"]}']
    """
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ch_float(value)
    return render_json_compact(value)


_INT_RANGE = range(-(2**63), 2**64)


def render_json_compact(value: Any) -> str:
    """An object or array as ``JSON_VALUE`` writes it (SEMANTICS "Query / Fields"):
    compact, strings escaped as JSON with non-ASCII characters as they are, numbers
    as ClickHouse prints them (:func:`ch_float`), and an integer outside
    ``[-2^63, 2^64 - 1]`` as a string of its digits.

    >>> render_json_compact({"s": 0.0, "t": [1e6, 2**64, -1], "é": "\\n"})
    '{"s":0,"t":[1e+06,"18446744073709551616",-1],"é":"\\\\n"}'
    """
    if isinstance(value, dict):
        items = (f"{_json_string(k)}:{render_json_compact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render_json_compact(v) for v in value) + "]"
    if isinstance(value, str):
        return _json_string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value in _INT_RANGE else _json_string(str(value))
    return ch_float(value)


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def json_value(payload_dump: str, keys: Sequence[str]) -> str:
    """The string production reads at a payload path: ``""`` when it is missing."""
    found = json_lookup(_parsed(payload_dump), keys)
    return "" if found is _MISSING else render_json_scalar(found)


def json_exists(payload_dump: str, keys: Sequence[str]) -> bool:
    """Whether the payload has the path (``JSON_EXISTS``; a JSON null exists)."""
    return json_lookup(_parsed(payload_dump), keys) is not _MISSING


def _map_getter(column: str, key: str) -> Getter:
    read = attrgetter(column)
    return lambda row: read(row).get(key)


def compile_field(name: str) -> Compiled:
    """The operand for ``{"$getField": name}`` (SEMANTICS "Query / Fields").

    Raises ``InvalidRequest`` (``Unknown field: ...``) for anything that is not a
    column, a payload path or a map key.
    """
    if name in STRING_COLUMNS:
        return Compiled("string", attrgetter(name))
    if name in PAYLOAD_NAMES:
        return Compiled("string", attrgetter("payload_dump"))
    if name == "created_at":
        return Compiled("datetime", attrgetter("created_at_ms"))
    if name == "span_status_code":
        return Compiled("enum", lambda row: STATUS_ORDER[row.span_status_code])
    if name == "scorer_tags":
        return Compiled("array", attrgetter("scorer_tags"))
    if name in MAP_COLUMNS:
        return Compiled("map", attrgetter(name))
    head, dot, rest = name.partition(".")
    if dot and head == "payload":
        keys = payload_keys(name, rest)
        return Compiled("json", lambda row: json_value(row.payload_dump, keys))
    if dot and head in STRING_MAPS:
        return Compiled("mapstr", _map_getter(head, rest))
    if dot and head in FLOAT_MAPS:
        return Compiled("number", _map_getter(head, rest))
    raise InvalidRequest(format_message(errors.UNKNOWN_FIELD, field=name))


def is_float_map_value(name: str) -> bool:
    """Whether ``name`` reads a value of a ``Map(String, Float64)`` column."""
    head, dot, _ = name.partition(".")
    return bool(dot) and head in FLOAT_MAPS


# --- the OrNull parses ---------------------------------------------------------------

_INT = re.compile(r"[+-]?[0-9]+")
_UINT = re.compile(r"\+?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def to_int64_or_null(text: str | None) -> int | None:
    """``toInt64OrNull``: an optional sign and digits, within Int64; else NULL.

    >>> [to_int64_or_null(s) for s in ("007", "+5", " 2", "5.0", "")]
    [7, 5, None, None, None]
    """
    if text is None or not _INT.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def to_uint8_or_null(text: str | None) -> int | None:
    """``toUInt8OrNull``: digits within 0..255; else NULL (``"true"`` is NULL)."""
    if text is None or not _UINT.fullmatch(text):
        return None
    value = int(text)
    return value if value <= 255 else None


def to_float64_or_null(text: str | None) -> float | None:
    """``toFloat64OrNull``: a decimal number; ``inf``, ``nan`` and blanks are NULL.

    >>> [to_float64_or_null(s) for s in ("0.9", "1e3", "inf", "nan", "x")]
    [0.9, 1000.0, None, None, None]
    """
    if text is None or not _FLOAT.fullmatch(text):
        return None
    value = float(text)
    return None if math.isinf(value) else value


def json_bool(text: str | None) -> int | None:
    """The cast a bool literal puts on a payload path:
    ``multiIf(v='true', 1, v='false', 0, toUInt8OrNull(v))``."""
    if text == "true":
        return 1
    if text == "false":
        return 0
    return to_uint8_or_null(text)


# --- literals ------------------------------------------------------------------------


def literal_kind(value: Any) -> Kind:
    """The kind of a literal value; a dict or list is ``Unknown value type`` (400)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise InvalidRequest(format_message(errors.UNKNOWN_VALUE_TYPE, value=value))


def compile_literal(node: LiteralOperation) -> Compiled:
    value = node.literal_
    kind = literal_kind(value)
    if kind == "bool":
        value = int(bool(value))
    return Compiled(kind, lambda row: value, node)


def parse_datetime_ms(value: Any) -> int:
    """A ``created_at`` literal as epoch milliseconds, truncated (SEMANTICS "Query /
    created_at and span_status_code"): ISO 8601 (``Z`` or an offset; naive is UTC; a
    date is midnight) or epoch seconds.

    >>> parse_datetime_ms("2024-05-01T12:00:00.123999Z"), parse_datetime_ms(1714564800)
    (1714564800123, 1714564800000)
    """
    if isinstance(value, bool | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequest(format_message(errors.BAD_DATETIME_LITERAL, value=value))
        return math.floor(value * 1000) if isinstance(value, float) else int(value) * 1000
    try:
        # Python 3.10's fromisoformat knows no "Z".
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError, AttributeError):
        raise InvalidRequest(format_message(errors.BAD_DATETIME_LITERAL, value=value)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - EPOCH
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return us // 1000


# --- casts ---------------------------------------------------------------------------


def infer_cast(field: Compiled, literal: Compiled) -> Compiled:
    """``field`` cast as the literal on the other side of a comparison asks
    (SEMANTICS "Query / Casts inferred from the literal").

    Only payload paths and string-map values are cast; other kinds are returned as
    they are (the comparison then checks that the kinds fit).
    """
    get = field.get
    if field.kind == "json":
        if literal.kind == "number":
            parse = to_int64_or_null if isinstance(_raw(literal), int) else to_float64_or_null
            return Compiled("number", lambda row: parse(get(row)))
        if literal.kind == "bool":
            return Compiled("number", lambda row: json_bool(get(row)))
        return Compiled("string", get)
    if field.kind == "mapstr":
        if literal.kind == "number":
            parse = to_int64_or_null if isinstance(_raw(literal), int) else to_float64_or_null
            return Compiled("number", lambda row: parse(get(row)))
        if literal.kind == "bool":
            return Compiled("number", lambda row: to_uint8_or_null(get(row)))
        return Compiled("string", get)
    return field


def _raw(compiled: Compiled) -> Any:
    return None if compiled.literal is None else compiled.literal.literal_


def compile_convert(node: ConvertOperation, depth: int) -> Compiled:
    """``$convert``: cast without inference (SEMANTICS "Query / $convert and $size").

    Strings parse with the ``...OrNull`` functions (so ``"true"`` to ``bool`` is NULL);
    a number, date or array cannot be parsed (``Illegal type of argument``);
    ``exists`` is ``IS NOT NULL``.
    """
    inner = compile_operand(node.convert_.input, depth + 1)
    to = node.convert_.to
    get = inner.get
    if to == "exists":
        return Compiled("bool", lambda row: int(get(row) is not None))
    if inner.kind == "null":
        return Compiled("null", lambda row: None)
    stringy = inner.kind in ("string", "json", "mapstr")
    if to == "string":
        if stringy:
            return Compiled("string", get)
        if inner.literal is not None and isinstance(_raw(inner), bool):
            # A Bool parameter prints as its name, a condition (UInt8) as a digit.
            text = "true" if _raw(inner) else "false"
            return Compiled("string", lambda row: text)
        if inner.kind in ("number", "bool"):
            return Compiled("string", lambda row: _number_text(get(row)))
        if inner.kind == "datetime":
            return Compiled("string", lambda row: _datetime_text(get(row)))
        if inner.kind == "enum":
            return Compiled("string", lambda row: _status_name(get(row)))
        raise _illegal("toString", inner.kind)
    if not stringy:
        raise _illegal(_CAST_FUNCTIONS[to], inner.kind)
    parse: Callable[[str | None], Any] = {
        "double": to_float64_or_null,
        "int": to_int64_or_null,
        "bool": to_uint8_or_null,
    }[to]
    integer = {"int": "Int64", "bool": "UInt8"}.get(to)
    return Compiled("number", lambda row: parse(get(row)), integer=integer)


_CAST_FUNCTIONS = {"double": "toFloat64OrNull", "int": "toInt64OrNull", "bool": "toUInt8OrNull"}


def _number_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return ch_to_string(value)
    return str(value)


def _datetime_text(ms: int) -> str:
    moment = EPOCH.timestamp() + ms / 1000
    text = datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{ms % 1000:03d}"


_STATUS_NAMES = {v: k for k, v in STATUS_ORDER.items()}


def _status_name(value: int) -> str:
    return _STATUS_NAMES[value]


def _illegal(function: str, kind: str) -> InvalidRequest:
    return InvalidRequest(format_message(errors.ILLEGAL_TYPE, function=function, kind=kind))


def _no_common_type(left: str, right: str) -> InvalidRequest:
    return InvalidRequest(format_message(errors.NO_COMMON_TYPE, left=left, right=right))


# --- comparisons ---------------------------------------------------------------------

Op = Literal["eq", "gt", "gte", "lt", "lte"]
_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}
_NUMERIC: frozenset[str] = frozenset({"number", "bool"})
_TEXT: frozenset[str] = frozenset({"string", "json", "mapstr"})


_SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+")
_UNSIGNED_DIGITS = re.compile(r"\+?[0-9]+")


def _number_for(text: str, integer: str | None) -> float | int | None:
    """A string literal compared with a number, as ClickHouse converts it to the
    number's type (SEMANTICS "Query / Casts inferred from the literal"):
    ``toFloat64OrNull``'s reading for a float; for an integer type only an optional
    sign (``+`` alone for an unsigned type) and digits — ``"1e+06"``, ``"5.0"`` or
    ``" 5"`` fail to convert (``None``: the caller's 400).

    >>> [_number_for(s, "UInt64") for s in ("+5", "05", "-1", "1e+06")]
    [5, 5, None, None]
    >>> _number_for("1e+06", None), _number_for("-1", "Int64")
    (1000000.0, -1)
    """
    if integer is None:
        return to_float64_or_null(text)
    digits = _SIGNED_DIGITS if integer == "Int64" else _UNSIGNED_DIGITS
    return int(text) if digits.fullmatch(text) else None


def _side_for(other: Compiled, side: Compiled) -> Compiled:
    """``side`` made comparable with ``other``: a literal converted to the kind of a
    date or status column, a field cast by a literal."""
    if side.literal is not None and other.literal is None:
        value = _raw(side)
        if other.kind == "datetime" and side.kind in ("string", "number", "bool"):
            ms = parse_datetime_ms(value)
            return Compiled("datetime", lambda row: ms, side.literal)
        if other.kind == "enum" and side.kind == "string":
            code = STATUS_ORDER.get(value)
            # An unknown status name matches nothing: the comparison is false.
            return Compiled("enum", lambda row: code, side.literal)
        if other.kind == "number" and side.kind == "string":
            number = _number_for(value, other.integer)
            if number is None:
                raise InvalidRequest(format_message(errors.BAD_NUMBER_LITERAL, value=value))
            return Compiled("number", lambda row: number, side.literal)
    if other.literal is not None and side.literal is None:
        return infer_cast(side, other)
    return side


def _compatible(a: Kind, b: Kind) -> bool:
    if a == "null" or b == "null":
        return True
    if a in _NUMERIC and b in _NUMERIC:
        return True
    if a in _TEXT and b in _TEXT:
        return True
    if a == "enum" and b in _NUMERIC | {"enum"}:
        return True
    if b == "enum" and a in _NUMERIC:
        return True
    return a == b and a in ("datetime", "array")


def compile_comparison(op: Op, left: Compiled, right: Compiled) -> Compiled:
    """``$eq`` / ``$gt`` / ``$gte`` / ``$lt`` / ``$lte``: NULL when either side is NULL;
    kinds that ClickHouse cannot compare are ``No common type`` (400)."""
    a = _side_for(right, left)
    b = _side_for(left, right)
    if not _compatible(a.kind, b.kind):
        raise _no_common_type(a.kind, b.kind)
    test = _TESTS[op]
    get_a, get_b = a.get, b.get
    unknown_status = (a.kind == "enum" and a.literal is not None) or (
        b.kind == "enum" and b.literal is not None
    )

    def compare(row: FeedbackRow) -> int | None:
        x = get_a(row)
        y = get_b(row)
        if x is None or y is None:
            # An unknown status name is not NULL in ClickHouse: it is just false.
            return 0 if unknown_status else None
        return int(test(x, y))

    return Compiled("bool", compare)


def compile_in(node: InOperation, depth: int) -> Compiled:
    """``$in``: one cast inferred from all literals of the list (ints with floats →
    double; mixed kinds → compared as strings); an empty list is false (NULL for a
    NULL left side)."""
    left_node, items_node = node.in_
    left = compile_operand(left_node, depth + 1)
    items = [compile_operand(item, depth + 1) for item in items_node]
    literals = [item for item in items if item.literal is not None]
    kinds = {item.kind for item in literals} - {"null"}
    if left.kind == "datetime" and "string" in kinds:
        raise _no_common_type("datetime", "string")
    if left.kind in ("array", "map") and not items:
        # ClickHouse reads () as an empty tuple, which no array or map is compared with.
        raise _no_common_type(left.kind, "empty list")
    if left.kind in ("json", "mapstr") and literals:
        raw = [_raw(item) for item in literals if item.kind != "null"]
        if kinds == {"number"}:
            any_float = any(isinstance(v, float) for v in raw)
            parse = to_float64_or_null if any_float else to_int64_or_null
            left = Compiled("number", _then(left.get, parse))
        elif kinds == {"bool"}:
            cast = json_bool if left.kind == "json" else to_uint8_or_null
            left = Compiled("number", _then(left.get, cast))
        elif len(kinds) > 1:
            # No single cast fits: production compares the value with each literal's text.
            items = [
                Compiled("string", _constant(_literal_text(_raw(i))), i.literal)
                if i.literal is not None and i.kind != "null"
                else i
                for i in items
            ]
            left = Compiled("string", left.get)
        else:
            left = Compiled("string", left.get)
    resolved = [_side_for(left, item) for item in items]
    for item in resolved:
        if not _compatible(left.kind, item.kind):
            raise _no_common_type(left.kind, item.kind)
    get = left.get
    if all(item.literal is not None for item in resolved):
        values = frozenset(item.get(None) for item in resolved if item.kind != "null")  # type: ignore[arg-type]

        def member(row: FeedbackRow) -> int | None:
            x = get(row)
            if x is None:
                return None
            return int(x in values)

        return Compiled("bool", member)
    getters = [item.get for item in resolved]

    def member_any(row: FeedbackRow) -> int | None:
        x = get(row)
        if x is None:
            return None
        return int(any(x == g(row) for g in getters))

    return Compiled("bool", member_any)


def _then(first: Getter, second: Callable[[Any], Any]) -> Getter:
    return lambda row: second(first(row))


def _constant(value: Any) -> Getter:
    return lambda row: value


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ch_field_text(value)
    return str(value)


# --- $contains and $size -------------------------------------------------------------


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as ClickHouse's case-insensitive functions do.

    >>> ascii_lower("ÉcOLE")
    'École'
    """
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def compile_contains(spec: ContainsSpec, depth: int) -> Compiled:
    """Query / $contains: element membership on ``scorer_tags`` (``has``; a NULL
    ``substr`` is false there), a substring test on any text (``position``; NULL
    with a NULL side); ``case_insensitive`` folds ASCII only."""
    source = compile_operand(spec.input, depth + 1)
    needle = compile_operand(spec.substr, depth + 1)
    folded = bool(spec.case_insensitive)
    get_s, get_n = source.get, needle.get
    if source.kind == "array":
        if needle.kind not in _TEXT | {"null"}:
            if folded:
                raise _illegal("has", needle.kind)
            raise _no_common_type("array of strings", needle.kind)

        def has(row: FeedbackRow) -> int | None:
            tags, sub = get_s(row), get_n(row)
            if sub is None:
                return 0  # has(tags, NULL) finds no NULL element: false, not NULL
            if folded:
                sub = ascii_lower(sub)
                return int(any(ascii_lower(tag) == sub for tag in tags))
            return int(sub in tags)

        return Compiled("bool", has)
    if source.kind not in _TEXT | {"null"}:
        raise _illegal("positionCaseInsensitive" if folded else "position", source.kind)
    if needle.kind not in _TEXT | {"null"}:
        raise _illegal("positionCaseInsensitive" if folded else "position", needle.kind)

    def position(row: FeedbackRow) -> int | None:
        text, sub = get_s(row), get_n(row)
        if text is None or sub is None:
            return None
        if folded:
            return int(ascii_lower(sub) in ascii_lower(text))
        return int(sub in text)

    return Compiled("bool", position)


def compile_size(node: SizeOperation, depth: int) -> Compiled:
    """``$size`` (SEMANTICS "Query / $convert and $size"): the number of elements of
    an array or map column."""
    inner = compile_operand(node.size_, depth + 1)
    if inner.kind not in ("array", "map"):
        raise _illegal("length", inner.kind)
    get = inner.get
    return Compiled("number", lambda row: len(get(row)), integer="UInt64")


# --- logic ---------------------------------------------------------------------------


def _condition(operand: Compiled, function: str) -> Getter:
    if operand.kind not in _NUMERIC | {"null"}:
        raise _illegal(function, operand.kind)
    return operand.get


def compile_and(operands: Sequence[Compiled]) -> Compiled:
    """Query / Three-valued logic, AND: false wins, then NULL, then true."""
    getters = [_condition(o, "and") for o in operands]
    if len(getters) == 1:
        return Compiled("bool", getters[0])

    def both(row: FeedbackRow) -> int | None:
        unknown = False
        for get in getters:
            value = get(row)
            if value is None:
                unknown = True
            elif not value:
                return 0
        return None if unknown else 1

    return Compiled("bool", both)


def compile_or(operands: Sequence[Compiled]) -> Compiled:
    """Query / Three-valued logic, OR: true wins, then NULL, then false."""
    getters = [_condition(o, "or") for o in operands]
    if len(getters) == 1:
        return Compiled("bool", getters[0])

    def either(row: FeedbackRow) -> int | None:
        unknown = False
        for get in getters:
            value = get(row)
            if value is None:
                unknown = True
            elif value:
                return 1
        return None if unknown else 0

    return Compiled("bool", either)


def compile_not(operand: Compiled) -> Compiled:
    """Query / Three-valued logic, NOT: ``NOT NULL`` is NULL."""
    get = _condition(operand, "not")

    def negate(row: FeedbackRow) -> int | None:
        value = get(row)
        return None if value is None else int(not value)

    return Compiled("bool", negate)


# --- the expression ------------------------------------------------------------------

_COMPARISONS: dict[type, tuple[Op, str]] = {
    EqOperation: ("eq", "eq_"),
    GtOperation: ("gt", "gt_"),
    GteOperation: ("gte", "gte_"),
    LtOperation: ("lt", "lt_"),
    LteOperation: ("lte", "lte_"),
}


def compile_operand(node: Any, depth: int = 0) -> Compiled:
    """Query / The Query expression: compile one operand or operation (checks and
    type errors happen here)."""
    if depth > MAX_QUERY_DEPTH:
        raise InvalidRequest(format_message(errors.QUERY_TOO_DEEP, limit=MAX_QUERY_DEPTH))
    if isinstance(node, LiteralOperation):
        return compile_literal(node)
    if isinstance(node, GetFieldOperator):
        return compile_field(node.get_field_)
    if isinstance(node, ConvertOperation):
        return compile_convert(node, depth)
    if isinstance(node, SizeOperation):
        return compile_size(node, depth)
    if isinstance(node, AndOperation):
        if not node.and_:
            raise InvalidRequest(errors.EMPTY_AND)
        return compile_and([compile_operand(o, depth + 1) for o in node.and_])
    if isinstance(node, OrOperation):
        if not node.or_:
            raise InvalidRequest(errors.EMPTY_OR)
        return compile_or([compile_operand(o, depth + 1) for o in node.or_])
    if isinstance(node, NotOperation):
        return compile_not(compile_operand(node.not_[0], depth + 1))
    comparison = _COMPARISONS.get(type(node))
    if comparison is not None:
        op, attribute = comparison
        left, right = getattr(node, attribute)
        return compile_comparison(
            op, compile_operand(left, depth + 1), compile_operand(right, depth + 1)
        )
    if isinstance(node, InOperation):
        return compile_in(node, depth)
    if isinstance(node, ContainsOperation):
        return compile_contains(node.contains_, depth)
    if isinstance(node, ContainsTokenOperation):
        raise InvalidRequest(errors.CONTAINS_TOKEN_UNSUPPORTED)
    raise InvalidRequest(format_message(errors.UNKNOWN_VALUE_TYPE, value=node))


def count_nodes(node: Any) -> int:
    """Query / Bounded work (query): operands and operations in an expression,
    stopping just past the limit.

    ``O(min(size, MAX_QUERY_NODES))``.
    """
    seen = 0
    stack = [node]
    while stack:
        current = stack.pop()
        seen += 1
        if seen > MAX_QUERY_NODES:
            break
        for child in _children(current):
            stack.append(child)
    return seen


def _children(node: Any) -> list[Any]:
    if isinstance(node, AndOperation):
        return list(node.and_)
    if isinstance(node, OrOperation):
        return list(node.or_)
    if isinstance(node, NotOperation):
        return list(node.not_)
    if isinstance(node, InOperation):
        return [node.in_[0], *node.in_[1]]
    if isinstance(node, ContainsOperation | ContainsTokenOperation):
        spec = node.contains_ if isinstance(node, ContainsOperation) else node.contains_token_
        return [spec.input, spec.substr]
    if isinstance(node, ConvertOperation):
        return [node.convert_.input]
    if isinstance(node, SizeOperation):
        return [node.size_]
    comparison = _COMPARISONS.get(type(node))
    if comparison is not None:
        return list(getattr(node, comparison[1]))
    return []


Predicate = Callable[[FeedbackRow], bool]


def compile_query(query: Query | None) -> Predicate:
    """The predicate of a whole ``Query`` (``None`` matches every row).

    Raises ``InvalidRequest`` for a semantic error or an expression over the bounded
    work limits. A row matches when its condition is true (not false, not NULL).

    >>> from refengine.models import Query
    >>> match = compile_query(Query.model_validate(
    ...     {"$expr": {"$eq": [{"$literal": "1"}, {"$literal": "1"}]}}))
    >>> match(None)
    True
    """
    if query is None:
        return lambda row: True
    if count_nodes(query.expr_) > MAX_QUERY_NODES:
        raise InvalidRequest(format_message(errors.QUERY_TOO_LARGE, limit=MAX_QUERY_NODES))
    condition = compile_operand(query.expr_)
    get = condition.get
    return lambda row: get(row) == 1
