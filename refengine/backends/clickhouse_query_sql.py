"""The SQL of the rest of the feedback family on ClickHouse: query, purge, replace's
read-back, payload_schema.

Pure functions from a checked request (the shared plans of :mod:`refengine.semantics`
have refused everything they refuse before any of this runs) to ``(sql, params)``.
Every request value is a bound parameter (``{name:Type}``); the only words of a
statement are this module's own: column names from the fixed lists of
:mod:`refengine.semantics.query`, function names, and aliases it numbers itself.

The Query language is translated as production translates it (spec/SEMANTICS.md,
"Query"): a payload path is ``JSON_VALUE(payload_dump, '$."a"[0]')`` read with
``toString`` or cast by the literal on the other side (``toInt64OrNull``,
``toFloat64OrNull``, ``multiIf(v = 'true', 1, v = 'false', 0, toUInt8OrNull(v))``);
a map key is ``if(mapContains(m, k), m[k], NULL)``; ``$contains`` is ``has`` on
``scorer_tags`` and ``position`` elsewhere; literals are bound with their own type
(``String``, ``Int64``, ``Float64``, ``Bool``). The kind of every operand is tracked
as :mod:`refengine.semantics.query` tracks it, so each cast is the one the shared
rules infer.

Production runs its statements with ``function_json_value_return_type_allow_complex
= 1`` (objects and arrays read as their JSON text); the statements here carry that
setting in the subquery that evaluates the expressions, so they need nothing from
the session.

Insertion order: refengine answers rows in store order (``created_at``, then
insertion) where production leaves the order open (spec/SEMANTICS.md, "Query /
Order"). A MergeTree keeps rows of equal sort key in insertion order within a part
and merges parts in block order, so ``(created_at, first block of the part, offset
in the part)`` is the store order; :data:`STORE_ORDER` is that key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..models import (
    AndOperation,
    ContainsOperation,
    ConvertOperation,
    EqOperation,
    FeedbackQueryReq,
    GetFieldOperator,
    GteOperation,
    GtOperation,
    InOperation,
    LiteralOperation,
    LteOperation,
    LtOperation,
    NotOperation,
    OrOperation,
    SizeOperation,
)
from ..rows import STATUS_ORDER, FeedbackRow
from ..semantics.feedback_query import COUNT_STAR, DEFAULT_FIELDS
from ..semantics.payload_schema import SchemaPlan
from ..semantics.query import (
    FLOAT_MAPS,
    MAP_COLUMNS,
    PAYLOAD_NAMES,
    STRING_COLUMNS,
    STRING_MAPS,
    Kind,
    parse_datetime_ms,
    split_payload_path,
)
from .clickhouse_sql import type_and_trigger_filters

Params = dict[str, Any]

JSON_SETTINGS = (
    "SETTINGS function_json_value_return_type_allow_complex = 1, "
    "function_json_value_return_type_allow_nullable = 0"
)
"""Production's ``JSON_VALUE`` settings: complex values as JSON text, ``''`` when
missing (the defaults of a server; stated so that no session setting changes them)."""

STORE_ORDER = (
    "created_at",
    "toUInt64(splitByChar('_', _part)[2])",
    "_part_offset",
)
"""The store order of rows (see the module docstring): a part's name is
``<partition>_<min block>_<max block>_<level>[_<mutation>]``, and this table has one
partition, ``all``."""


@dataclass
class Binder:
    """Numbers the bound parameters of one statement."""

    params: Params = field(default_factory=dict)

    def bind(self, value: Any, kind: str) -> str:
        """The placeholder ``{pN:kind}`` of a new parameter holding ``value``."""
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{kind}}}"


@dataclass(frozen=True)
class Expr:
    """An operand as SQL: its kind (as :mod:`refengine.semantics.query` names kinds),
    its text, and for a literal the literal's value."""

    kind: Kind
    sql: str
    literal: LiteralOperation | None = None


def json_path(path: str) -> str:
    r"""The JSONPath production builds for a payload path: ``."key"`` per key,
    ``[i]`` for an all-digit key.

    >>> json_path(r"output.a\.b.0")
    '$."output"."a.b"[0]'
    """
    parts = []
    for key in split_payload_path(path):
        parts.append(f"[{key}]" if key.isdigit() else f'."{key}"')
    return "$" + "".join(parts)


_JSON_CASTS = {
    "int": "toInt64OrNull({v})",
    "double": "toFloat64OrNull({v})",
    "bool": "multiIf({v} = 'true', 1, {v} = 'false', 0, toUInt8OrNull({v}))",
    "string": "toString({v})",
}
_PLAIN_CASTS = {
    "int": "toInt64OrNull({v})",
    "double": "toFloat64OrNull({v})",
    "bool": "toUInt8OrNull({v})",
    "string": "toString({v})",
}
Cast = Literal["int", "double", "bool", "string"]


class Translator:
    """Translates one request's Query expression and fields, binding as it goes.

    The request has passed :func:`refengine.semantics.feedback_query.plan`, so every
    field is known and every comparison is one ClickHouse can plan.
    """

    def __init__(self, binder: Binder) -> None:
        self.binder = binder

    # --- fields ------------------------------------------------------------------

    def payload_value(self, path: str) -> str:
        """``JSON_VALUE`` of a payload path (a String; ``''`` when missing)."""
        placeholder = self.binder.bind(json_path(path), "String")
        return f"JSON_VALUE(payload_dump, {placeholder})"

    def payload_exists(self, path: str) -> str:
        placeholder = self.binder.bind(json_path(path), "String")
        return f"JSON_EXISTS(payload_dump, {placeholder})"

    def map_value(self, column: str, key: str) -> str:
        """A map key as production reads it: NULL when the row lacks the key."""
        placeholder = self.binder.bind(key, "String")
        return f"if(mapContains({column}, {placeholder}), {column}[{placeholder}], NULL)"

    def field(self, name: str) -> Expr:
        """Query / Fields: the operand ``{"$getField": name}``."""
        if name in STRING_COLUMNS:
            return Expr("string", name)
        if name in PAYLOAD_NAMES:
            return Expr("string", "payload_dump")
        if name == "created_at":
            return Expr("datetime", "created_at")
        if name == "span_status_code":
            return Expr("enum", "span_status_code")
        if name == "scorer_tags":
            return Expr("array", "scorer_tags")
        if name in MAP_COLUMNS:
            return Expr("map", name)
        head, _, rest = name.partition(".")
        if head == "payload":
            return Expr("json", self.payload_value(rest))
        if head in STRING_MAPS:
            return Expr("mapstr", self.map_value(head, rest))
        if head in FLOAT_MAPS:
            return Expr("number", self.map_value(head, rest))
        raise ValueError(f"field {name!r} passed the plan but has no SQL")  # pragma: no cover

    # --- literals and casts ------------------------------------------------------

    def literal(self, node: LiteralOperation) -> Expr:
        value = node.literal_
        if value is None:
            return Expr("null", "NULL", node)
        if isinstance(value, bool):
            return Expr("bool", self.binder.bind(value, "Bool"), node)
        if isinstance(value, int):
            # Past Int64 (the model admits up to UInt64's range) an Int64 parameter
            # would wrap: bound as UInt64 it keeps its value, as the engine reads it.
            kind = "Int64" if value < 2**63 else "UInt64"
            return Expr("number", self.binder.bind(value, kind), node)
        if isinstance(value, float):
            return Expr("number", self.binder.bind(value, "Float64"), node)
        return Expr("string", self.binder.bind(value, "String"), node)

    @staticmethod
    def cast(operand: Expr, to: Cast) -> Expr:
        """A payload path or string-map value cast as a literal asks (Query / Casts
        inferred from the literal); a payload path with ``multiIf`` for ``bool``."""
        casts = _JSON_CASTS if operand.kind == "json" else _PLAIN_CASTS
        kind: Kind = "string" if to == "string" else "number"
        return Expr(kind, casts[to].format(v=operand.sql))

    def inferred(self, operand: Expr, other: Expr) -> Expr:
        """``operand`` made comparable with the literal ``other`` (the shared rules'
        ``_side_for``): a field cast by the literal's type, a literal turned into a
        date or an enum value where the other side is one."""
        if operand.literal is not None and other.literal is None:
            value = operand.literal.literal_
            if other.kind == "datetime" and operand.kind in ("string", "number", "bool"):
                ms = self.binder.bind(parse_datetime_ms(value), "Int64")
                return Expr("datetime", f"fromUnixTimestamp64Milli({ms}, 'UTC')", operand.literal)
            if other.kind == "enum" and operand.kind == "string":
                code = STATUS_ORDER.get(str(value))
                if code is None:
                    # An unknown name is no value of the enum: the comparison is false.
                    return Expr("enum", "NULL", operand.literal)
                return Expr("enum", self.binder.bind(code, "Int8"), operand.literal)
            return operand
        if other.literal is not None and operand.kind in ("json", "mapstr"):
            value = other.literal.literal_
            if other.kind == "number":
                return self.cast(operand, "int" if isinstance(value, int) else "double")
            if other.kind == "bool":
                return self.cast(operand, "bool")
            return self.cast(operand, "string")
        if operand.kind == "json":
            return self.cast(operand, "string")
        return operand

    # --- operations --------------------------------------------------------------

    def operand(self, node: Any) -> Expr:
        """Query / The Query expression: one operand or operation as SQL."""
        if isinstance(node, LiteralOperation):
            return self.literal(node)
        if isinstance(node, GetFieldOperator):
            return self.field(node.get_field_)
        if isinstance(node, ConvertOperation):
            return self.convert(node)
        if isinstance(node, SizeOperation):
            inner = self.operand(node.size_)
            return Expr("number", f"length({inner.sql})")
        if isinstance(node, AndOperation | OrOperation):
            items = node.and_ if isinstance(node, AndOperation) else node.or_
            parts = [self.operand(item).sql for item in items]
            if len(parts) == 1:
                return Expr("bool", parts[0])
            word = " AND " if isinstance(node, AndOperation) else " OR "
            return Expr("bool", "(" + word.join(parts) + ")")
        if isinstance(node, NotOperation):
            return Expr("bool", f"(NOT ({self.operand(node.not_[0]).sql}))")
        for kind, attribute, symbol in _COMPARISONS:
            if isinstance(node, kind):
                left, right = getattr(node, attribute)
                return self.comparison(symbol, self.operand(left), self.operand(right))
        if isinstance(node, InOperation):
            return self.membership(node)
        if isinstance(node, ContainsOperation):
            return self.contains(node)
        raise ValueError(f"operand {node!r} passed the plan but has no SQL")  # pragma: no cover

    def comparison(self, symbol: str, left: Expr, right: Expr) -> Expr:
        a = self.inferred(left, right)
        b = self.inferred(right, left)
        if _unknown_status(a) or _unknown_status(b):
            return Expr("bool", "0")  # an unknown status name: false, not NULL
        return Expr("bool", f"({a.sql} {symbol} {b.sql})")

    def membership(self, node: InOperation) -> Expr:
        """``$in``: one cast from all the literals (ints with floats → double; mixed
        kinds → the value as text against the literals, which ClickHouse converts to
        ``String``); ``IN ()`` is false."""
        left_node, item_nodes = node.in_
        left = self.operand(left_node)
        literal_nodes = [n for n in item_nodes if isinstance(n, LiteralOperation)]
        kinds = {_literal_kind(n.literal_) for n in literal_nodes} - {"null"}
        if left.kind in ("json", "mapstr") and literal_nodes:
            if kinds == {"number"}:
                any_float = any(isinstance(n.literal_, float) for n in literal_nodes)
                left = self.cast(left, "double" if any_float else "int")
            elif kinds == {"bool"}:
                left = self.cast(left, "bool")
            elif len(kinds) > 1:
                # Production's shape: the value as text, each literal bound with its own
                # type; ClickHouse turns the set's numbers and booleans into strings.
                left = self.cast(left, "string")
                return self._in(left, [self.operand(n) for n in item_nodes])
            else:
                left = self.cast(left, "string")
        elif left.kind == "json":
            left = self.cast(left, "string")
        items = [self.inferred(self.operand(n), left) for n in item_nodes]
        return self._in(left, items)

    @staticmethod
    def _in(left: Expr, items: Sequence[Expr]) -> Expr:
        # Production's IN, whatever the items: ClickHouse answers NULL for a NULL left
        # side, else whether it equals an item (a NULL item equals nothing), and
        # ``IN ()`` is false — the shared rules' three-valued membership.
        return Expr("bool", f"({left.sql} IN ({', '.join(item.sql for item in items)}))")

    def contains(self, node: ContainsOperation) -> Expr:
        """Query / $contains: ``has`` (or case-blind element equality) on
        ``scorer_tags``, ``position`` / ``positionCaseInsensitive`` elsewhere."""
        spec = node.contains_
        source = self.operand(spec.input)
        needle = self.operand(spec.substr)
        if needle.kind == "json":
            needle = self.cast(needle, "string")
        if source.kind == "array":
            if spec.case_insensitive:
                return Expr(
                    "bool", f"arrayExists(x -> lower(x) = lower({needle.sql}), {source.sql})"
                )
            return Expr("bool", f"has({source.sql}, {needle.sql})")
        if source.kind == "json":
            source = self.cast(source, "string")
        function = "positionCaseInsensitive" if spec.case_insensitive else "position"
        return Expr("bool", f"({function}({source.sql}, {needle.sql}) > 0)")

    def convert(self, node: ConvertOperation) -> Expr:
        """Query / $convert and $size: a cast without inference (a payload path is
        read as its string first)."""
        inner = self.operand(node.convert_.input)
        if inner.kind == "json":
            inner = self.cast(inner, "string")
        to = node.convert_.to
        if to == "exists":
            return Expr("bool", f"({inner.sql} IS NOT NULL)")
        if inner.kind == "null":
            return Expr("null", "NULL")
        if to == "string":
            return Expr("string", f"toString({inner.sql})")
        return Expr("number", _PLAIN_CASTS[to].format(v=inner.sql))

    # --- the request -------------------------------------------------------------

    def condition(self, request: FeedbackQueryReq) -> str:
        """The WHERE condition of the request's project and query: a row matches
        when its condition is true (``= 1``: not false, not NULL)."""
        project = self.binder.bind(request.project_id, "String")
        where = f"project_id = {project}"
        if request.query is not None:
            where += f" AND (({self.operand(request.query.expr_).sql}) = 1)"
        return where

    def sort_terms(self, name: str, descending: bool) -> list[tuple[str, str]]:
        """Query / Order: ``(expression, direction)`` terms of one ``sort_by`` entry,
        NULLs last in both directions."""
        direction = "DESC" if descending else "ASC"
        head, dot, rest = name.partition(".")
        if dot and head == "payload":
            value = f"toString({self.payload_value(rest)})"
            return [
                (self.payload_exists(rest), "DESC"),
                (f"toFloat64OrNull({value})", f"{direction} NULLS LAST"),
                (value, direction),
            ]
        expr = self.field(name)
        if expr.kind == "map":
            return [(f"arrayZip(mapKeys({expr.sql}), mapValues({expr.sql}))", direction)]
        if expr.kind == "array":
            return [(expr.sql, direction)]
        return [(expr.sql, f"{direction} NULLS LAST")]

    def output(self, name: str) -> tuple[str, str]:
        """``(sql, how to read it)`` of one requested field (Query / Projection)."""
        if name in PAYLOAD_NAMES:
            return "payload_dump", "json"
        if name == "created_at":
            return "toUnixTimestamp64Milli(created_at)", "datetime"
        if name == "span_status_code":
            return "toString(span_status_code)", "plain"
        if name in FLOAT_MAPS:
            return name, "float_map"
        head, dot, _ = name.partition(".")
        if dot and head in FLOAT_MAPS:
            return self.field(name).sql, "float"
        expr = self.field(name)
        if expr.kind == "json":
            return f"toString({expr.sql})", "plain"
        return expr.sql, "plain"


def _unknown_status(operand: Expr) -> bool:
    """A string literal compared with ``span_status_code`` that names no status."""
    return operand.kind == "enum" and operand.literal is not None and operand.sql == "NULL"


_COMPARISONS: tuple[tuple[type, str, str], ...] = (
    (EqOperation, "eq_", "="),
    (GtOperation, "gt_", ">"),
    (GteOperation, "gte_", ">="),
    (LtOperation, "lt_", "<"),
    (LteOperation, "lte_", "<="),
)


def _literal_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string"


@dataclass(frozen=True)
class QueryStatements:
    """The statements of one ``/feedback/query`` request."""

    rows_sql: str | None
    """The page of rows (``None`` for ``count(*)`` or ``limit = 0``: no rows to read)."""
    count_sql: str
    """``total_count``: the matching rows before limit and offset."""
    params: Params
    outputs: tuple[tuple[str, str], ...]
    """``(result key, how to read the cell)`` per column of ``rows_sql``."""


def query_statements(table: str, request: FeedbackQueryReq) -> QueryStatements:
    """The statements answering a checked query request.

    Rows: the expressions are evaluated in a subquery carrying
    :data:`JSON_SETTINGS` (the filter, each output column ``c<i>``, each sort term
    ``s<j>`` and the store order), then ordered, offset and limited outside it.
    Runtime complexity (building): ``O(size of the request)``.
    """
    t = Translator(Binder())
    where = t.condition(request)
    count_sql = f"SELECT count() FROM (SELECT 1 FROM {table} WHERE {where} {JSON_SETTINGS})"
    fields = list(request.fields or [])
    if fields == [COUNT_STAR] or request.limit == 0:
        return QueryStatements(None, count_sql, t.binder.params, ())
    names = fields or list(DEFAULT_FIELDS)
    selects: list[str] = []
    outputs: list[tuple[str, str]] = []
    for i, name in enumerate(names):
        sql, reader = t.output(name)
        selects.append(f"{sql} AS c{i}")
        key = "payload" if name == "payload_dump" else name
        outputs.append((key, reader))
    order: list[tuple[str, str]] = []
    for entry in request.sort_by or []:
        order.extend(t.sort_terms(entry.field, entry.direction == "desc"))
    sorts = []
    for j, (expression, direction) in enumerate(order):
        selects.append(f"{expression} AS s{j}")
        sorts.append(f"s{j} {direction}")
    for k, key in enumerate(STORE_ORDER):
        selects.append(f"{key} AS o{k}")
        sorts.append(f"o{k} ASC")
    rows_sql = (
        f"SELECT {', '.join(f'c{i}' for i in range(len(names)))} FROM ("
        f"SELECT {', '.join(selects)} FROM {table} WHERE {where} {JSON_SETTINGS}"
        f") ORDER BY {', '.join(sorts)}"
    )
    if request.limit is not None:
        rows_sql += f" LIMIT {t.binder.bind(request.limit, 'UInt64')}"
    if request.offset:
        rows_sql += f" OFFSET {t.binder.bind(request.offset, 'UInt64')}"
    return QueryStatements(rows_sql, count_sql, t.binder.params, tuple(outputs))


# --- purge and replace ------------------------------------------------------------


def delete_sql(table: str, project_id: str, ids: Sequence[str]) -> tuple[str, Params]:
    """Purge / Removal: a lightweight ``DELETE`` of every row of the project with one
    of ``ids``, waiting until the next read cannot see them
    (``lightweight_deletes_sync = 2``)."""
    return (
        f"DELETE FROM {table} WHERE project_id = {{project_id:String}} "
        "AND has({ids:Array(String)}, id) SETTINGS lightweight_deletes_sync = 2",
        {"project_id": project_id, "ids": sorted(ids)},
    )


ROW_COLUMNS: tuple[str, ...] = FeedbackRow._fields[: FeedbackRow._fields.index("created_at_ms")]
"""The stored columns in :class:`refengine.rows.FeedbackRow` order (``created_at_us``
is a column of the table too)."""


def rows_by_id_sql(table: str, project_id: str, ids: Sequence[str]) -> tuple[str, Params]:
    """Every stored column of the project's rows with one of ``ids``, in store order:
    what a replace reads before it deletes, to write back if its insert fails."""
    columns = ", ".join(ROW_COLUMNS)
    return (
        f"SELECT {columns} FROM {table} WHERE project_id = {{project_id:String}} "
        f"AND has({{ids:Array(String)}}, id) ORDER BY {', '.join(STORE_ORDER)}",
        {"project_id": project_id, "ids": sorted(ids)},
    )


# --- payload schema ---------------------------------------------------------------


def payload_sample_sql(table: str, project_id: str, p: SchemaPlan) -> tuple[str, Params]:
    """Payload schema / Sampling: per ``trigger_ref`` group (NULL is one group) the
    payload of its newest row in store order, the ``sample_limit`` groups whose
    newest row is newest first."""
    params: Params = {
        "project_id": project_id,
        "after_ms": p.after_ms,
        "before_ms": p.before_ms,
        "sample_limit": p.sample_limit,
    }
    where = [
        "project_id = {project_id:String}",
        "created_at >= fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC')",
        "created_at < fromUnixTimestamp64Milli({before_ms:Int64}, 'UTC')",
    ]
    where.extend(type_and_trigger_filters(p.feedback_type, p.trigger_ref, params))
    position = f"tuple({', '.join(STORE_ORDER)})"
    sql = (
        f"SELECT argMax(payload_dump, {position}) AS payload, max({position}) AS newest "
        f"FROM {table} WHERE {' AND '.join(where)} "
        "GROUP BY trigger_ref ORDER BY newest DESC LIMIT {sample_limit:UInt64}"
    )
    return sql, params


__all__ = [
    "JSON_SETTINGS",
    "ROW_COLUMNS",
    "STORE_ORDER",
    "Binder",
    "Expr",
    "QueryStatements",
    "Translator",
    "delete_sql",
    "json_path",
    "payload_sample_sql",
    "query_statements",
    "rows_by_id_sql",
]
