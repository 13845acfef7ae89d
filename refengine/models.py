"""Request and response bodies of the three feedback endpoints, as published.

Every field, type, default, bound, enum and ``additionalProperties: false`` follows
the published API pages (``tests/test_models.py`` holds the JSON schemas against a
transcription of them in ``spec/published/``). The create request also carries the
six fields production accepts beyond its published page.

Checks that production performs *in the model* live here and fail as pydantic
``ValidationError`` (HTTP 422); checks performed after the model live in the endpoint
modules and fail as :class:`refengine.errors.InvalidRequest` (HTTP 400).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from . import errors
from .clock import as_utc

MAX_RANGE_DAYS = 31
MAX_RANGE_MS = MAX_RANGE_DAYS * 86_400_000
MAX_AGGREGATE_BUCKETS = 256


UnknownFields = Literal["reject", "ignore"]
"""What a request model does with a field it does not define (SEMANTICS "Unknown
fields"): ``"reject"`` (422, the published ``additionalProperties: false``) or
``"ignore"`` (dropped, as production does since 2026-07-28)."""

UNKNOWN_FIELD_MODES: tuple[UnknownFields, ...] = ("reject", "ignore")

_unknown_fields: ContextVar[UnknownFields] = ContextVar(
    "refengine_unknown_fields", default="reject"
)


@contextmanager
def unknown_fields(mode: UnknownFields) -> Iterator[None]:
    """Validate request models in this thread or task with ``mode`` while inside.

    A context variable rather than a model parameter, because the HTTP server's
    request models are validated by FastAPI, which passes no validation context.
    """
    token = _unknown_fields.set(mode)
    try:
        yield
    finally:
        _unknown_fields.reset(token)


def unknown_fields_mode() -> UnknownFields:
    """The mode request models are validated with here and now (``"reject"``
    outside any :func:`unknown_fields` block)."""
    return _unknown_fields.get()


class _Request(BaseModel):
    """Request bodies reject unknown fields (``additionalProperties: false``), or,
    inside ``unknown_fields("ignore")``, drop them before validation — at the top
    level of every request model, nested ones (batch items, metrics) included.

    A model that must refuse unknown keys in both modes (production's ``Query``
    expression) derives from ``BaseModel`` with ``extra="forbid"``, not from this.

    Runtime complexity: ignoring costs one pass over the body's top-level keys.
    """

    model_config = ConfigDict(extra="forbid")
    _known_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Once per class: reading model_fields builds a new mapping on each access.
        cls._known_fields = frozenset(cls.model_fields)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_fields(cls, data: Any) -> Any:
        """Errors / Unknown fields: in ``"ignore"`` mode the body's unknown top-level
        keys are dropped before validation; in ``"reject"`` mode they stay, and
        ``extra="forbid"`` refuses them."""
        if _unknown_fields.get() == "ignore" and isinstance(data, dict):
            known = cls._known_fields
            if not data.keys() <= known:
                return {key: value for key, value in data.items() if key in known}
        return data


# --- POST /feedback/create -----------------------------------------------------------


class FeedbackCreateReq(_Request):
    """Body of ``POST /feedback/create``."""

    project_id: str = Field(examples=["entity/project"])
    weave_ref: str = Field(examples=["weave:///entity/project/object/name:digest"])
    creator: str | None = Field(default=None, examples=["Jane Smith"])
    feedback_type: str = Field(examples=["custom"])
    payload: dict[str, Any] = Field(examples=[{"key": "value"}])
    annotation_ref: str | None = Field(
        default=None, examples=["weave:///entity/project/object/name:digest"]
    )
    runnable_ref: str | None = Field(
        default=None, examples=["weave:///entity/project/op/name:digest"]
    )
    call_ref: str | None = Field(default=None, examples=["weave:///entity/project/call/call_id"])
    trigger_ref: str | None = Field(
        default=None, examples=["weave:///entity/project/object/name:digest"]
    )
    queue_id: str | None = Field(
        default=None,
        description="Annotation queue this feedback came from; null outside queues.",
        examples=["018f1f2a-9c2b-7d3e-b5a1-8c9d2e4f6a7b"],
    )
    scorer_tags: list[str] = Field(
        default_factory=list,
        description="Tags a scorer applied to the target (duplicates are kept).",
        examples=[["nsfw", "high-quality"]],
    )
    scorer_tag_reasons: dict[str, str] = Field(
        default_factory=dict,
        description="Why each tag was applied, by tag.",
        examples=[{"nsfw": "Contains explicit language"}],
    )
    scorer_tag_confidences: dict[str, float] = Field(
        default_factory=dict,
        description="Confidence per tag, nominally 0-1 (not enforced).",
        examples=[{"nsfw": 0.92}],
    )
    scorer_ratings: dict[str, float] = Field(
        default_factory=dict,
        description="Numeric ratings by name, nominally 0-1 (not enforced).",
        examples=[{"_rating_": 0.87}],
    )
    scorer_rating_reasons: dict[str, str] = Field(
        default_factory=dict,
        description="Why each rating was given, by rating name.",
        examples=[{"_rating_": "very confident response"}],
    )
    scorer_rating_confidences: dict[str, float] = Field(
        default_factory=dict,
        description="Confidence per rating, nominally 0-1 (not enforced).",
        examples=[{"_rating_": 0.92}],
    )
    wb_user_id: str | None = Field(
        default=None,
        description="Filled in by the server from the caller's identity; a sent value is "
        "overwritten over HTTP.",
    )
    id: str | None = Field(
        default=None,
        description="Client-chosen row id; a new UUIDv7 when absent or empty.",
        examples=["018f1f2a-9c2b-7d3e-b5a1-8c9d2e4f6a7b"],
    )
    # Accepted by production beyond the published page (aggregate reads them).
    span_agent_name: str = Field(default="", description="Agent that produced the span.")
    span_agent_version: str = Field(default="", description="Version of that agent.")
    span_status_code: str = Field(default="UNSET", description="Span status: UNSET, OK or ERROR.")
    span_conversation_id: str = Field(
        default="", description="Conversation id; filled from an agent_conversation ref."
    )
    span_trace_id: str = Field(default="", description="Trace id; filled from an agent_turn ref.")
    scorer_trace_id: str = Field(default="", description="Trace of the scorer run itself.")


class FeedbackCreateRes(BaseModel):
    """Response of ``POST /feedback/create``: the stored id, time, user and payload."""

    id: str
    created_at: datetime
    wb_user_id: str
    payload: dict[str, Any]


class FeedbackCreateBatchReq(_Request):
    """Body of ``POST /feedback/batch/create``: all items are written, or none."""

    batch: list[FeedbackCreateReq]


class FeedbackCreateBatchRes(BaseModel):
    """One create response per batch item, in request order."""

    res: list[FeedbackCreateRes]


# --- POST /feedback/aggregate --------------------------------------------------------

GroupByDimension = Literal["scorer_id", "span_agent_name", "span_agent_version", "span_status_code"]
SpanType = Literal["agent_turn", "agent_conversation"]


class FeedbackAggregateReq(_Request):
    """Body of ``POST /feedback/aggregate``: counts and rating sums of scorer feedback."""

    project_id: str = Field(examples=["entity/project"])
    after_ms: int = Field(ge=0, description="Inclusive lower bound on created_at, epoch ms.")
    before_ms: int = Field(ge=0, description="Exclusive upper bound on created_at, epoch ms.")
    time_bucket_seconds: int | None = Field(
        default=None, gt=0, description="Bucket width in seconds; null for no time buckets."
    )
    feedback_types: list[str] = Field(
        default_factory=list, description="Keep rows whose feedback_type has any of these prefixes."
    )
    tags: list[str] = Field(
        default_factory=list, description="Keep rows carrying any of these scorer tags."
    )
    rating_min: float | None = Field(
        default=None, ge=0, le=1, description="Keep rows whose _rating_ is at least this."
    )
    rating_max: float | None = Field(
        default=None, ge=0, le=1, description="Keep rows whose _rating_ is at most this."
    )
    monitor_ids: list[str] = Field(
        default_factory=list,
        description="Keep rows from these monitors (exact; a trailing '*' means prefix).",
    )
    scorer_ids: list[str] = Field(
        default_factory=list,
        description="Keep rows from these scorers (exact; a trailing '*' means prefix).",
    )
    span_agent_names: list[str] = Field(
        default_factory=list, description="Keep rows whose span_agent_name is one of these."
    )
    span_types: list[SpanType] = Field(
        default_factory=list, description="Keep rows targeting these span types."
    )
    group_by: list[GroupByDimension] = Field(
        default_factory=list, description="Dimensions to group rows by, in this order."
    )

    def has_filters(self) -> bool:
        """True when any filter narrows the rows beyond project and window."""
        return bool(
            self.feedback_types
            or self.tags
            or self.rating_min is not None
            or self.rating_max is not None
            or self.monitor_ids
            or self.scorer_ids
            or self.span_agent_names
            or self.span_types
        )

    @model_validator(mode="after")
    def _check_range(self) -> FeedbackAggregateReq:
        span_ms = self.before_ms - self.after_ms
        if span_ms <= 0:
            raise ValueError(errors.BEFORE_NOT_AFTER)
        is_bare_total = (
            self.time_bucket_seconds is None and not self.group_by and not self.has_filters()
        )
        if span_ms > MAX_RANGE_MS and not is_bare_total:
            raise ValueError(errors.OVER_31_DAYS_NOT_TOTAL)
        if (
            self.time_bucket_seconds is not None
            and (span_ms / 1000) / self.time_bucket_seconds > MAX_AGGREGATE_BUCKETS
        ):
            raise ValueError(errors.TOO_MANY_AGG_BUCKETS)
        return self


class FeedbackAggregateBucket(BaseModel):
    """One (time bucket, group) row of the aggregate answer."""

    time_bucket_start_ms: int | None = Field(
        default=None, description="Bucket start, epoch ms (UTC); null when unbucketed."
    )
    group: dict[str, str] = Field(
        default_factory=dict, description="The group-by values of this row, as strings."
    )
    total_count: int = Field(description="Rows in this bucket and group.")
    scored_count: int = Field(description="Rows with at least one tag or one rating.")
    tag_counts: dict[str, int] = Field(
        default_factory=dict, description="Occurrences of each tag (a repeated tag counts twice)."
    )
    rating_counts: dict[str, int] = Field(
        default_factory=dict, description="Rows carrying each rating key."
    )
    rating_sums: dict[str, float] = Field(
        default_factory=dict, description="Sum of each rating key; keys summing to 0 are left out."
    )


class FeedbackAggregateRes(BaseModel):
    """Sparse (bucket, group) rows of aggregated scorer feedback."""

    time_bucket_seconds: int | None = Field(
        default=None, description="Bucket width used, as requested; null when unbucketed."
    )
    after_ms: int = Field(description="Inclusive lower bound, as requested.")
    before_ms: int = Field(description="Exclusive upper bound, as requested.")
    buckets: list[FeedbackAggregateBucket] = Field(default_factory=list)


# --- POST /feedback/stats ------------------------------------------------------------

AggregationType = Literal["sum", "avg", "min", "max", "count", "count_true", "count_false"]
ValueType = Literal["numeric", "boolean", "categorical"]

DEFAULT_AGGREGATIONS: dict[str, list[AggregationType]] = {
    "numeric": ["avg", "min", "max"],
    "boolean": ["count_true", "count_false"],
    "categorical": ["count"],
}


class FeedbackMetricSpec(_Request):
    """One payload value to aggregate per time bucket."""

    json_path: str = Field(description="Dot-separated path into the payload, e.g. 'output.score'.")
    value_type: ValueType = Field(
        default="numeric", description="How the value at the path is read."
    )
    aggregations: list[AggregationType] = Field(
        default_factory=list,
        description="Aggregations to compute; empty picks the value type's defaults.",
    )
    percentiles: list[float] = Field(
        default_factory=list, description="Percentile levels in [0, 100] (numeric metrics)."
    )

    @model_validator(mode="after")
    def _default_aggregations(self) -> FeedbackMetricSpec:
        if not self.aggregations:
            self.aggregations = list(DEFAULT_AGGREGATIONS[self.value_type])
        return self


class FeedbackStatsReq(_Request):
    """Body of ``POST /feedback/stats``: payload metrics per time bucket."""

    project_id: str
    start: datetime = Field(description="Inclusive start; naive means UTC.")
    end: datetime | None = Field(
        default=None, description="Exclusive end; naive means UTC; null means now."
    )
    feedback_type: str | None = Field(default=None, description="Keep this feedback_type only.")
    trigger_ref: str | None = Field(
        default=None,
        description="Keep this trigger_ref; a ref ending in ':*' matches all versions.",
    )
    granularity: int | None = Field(
        default=None, description="Bucket width in seconds; null or 0 picks it from the range."
    )
    timezone: str = Field(
        default="UTC", description="IANA zone the bucket timestamps are shown in."
    )
    metrics: list[FeedbackMetricSpec] = Field(
        default_factory=list, description="Payload metrics to aggregate."
    )

    @field_validator("start", "end")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return as_utc(value)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 has no UTC datetime
            raise ValueError(errors.DATETIME_OUT_OF_RANGE) from None

    @model_validator(mode="after")
    def _check_range(self) -> FeedbackStatsReq:
        if self.end is not None:
            if self.end < self.start:
                raise ValueError(errors.END_BEFORE_START)
            if self.end - self.start > timedelta(days=MAX_RANGE_DAYS):
                raise ValueError(errors.STATS_RANGE_TOO_LONG)
        return self


class FeedbackStatsRes(BaseModel):
    """Time-bucketed metric aggregations plus whole-window statistics."""

    start: datetime = Field(description="Resolved start, UTC.")
    end: datetime = Field(description="Resolved end, UTC.")
    granularity: int = Field(description="Bucket width used, seconds.")
    timezone: str = Field(description="Zone the bucket timestamps are rendered in.")
    buckets: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per bucket: 'timestamp', '{agg}_{slug}' / 'p{p}_{slug}' keys, 'count'.",
    )
    window_stats: dict[str, dict[str, float | None]] | None = Field(
        default=None, description="Per metric slug, each aggregation over the whole window."
    )


# =====================================================================================
# --- The rest of the feedback family: query, purge, replace, payload_schema,
# --- server_info (SEMANTICS "Query", "Purge", "Replace", "Payload schema",
# --- "Server info"). Appended as one section; the models above are unchanged.
# =====================================================================================

QueryLiteral = str | int | float | bool | dict[str, Any] | list[Any] | None
"""What ``$literal`` accepts, as production's model does; a dict or list passes the
model and is rejected by the evaluator (``Unknown value type``, 400)."""

CastTo = Literal["double", "string", "int", "bool", "exists"]


class _QueryNode(BaseModel):
    """Every node of a Query expression forbids unknown keys, as production does."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class LiteralOperation(_QueryNode):
    """``{"$literal": value}``."""

    literal_: QueryLiteral = Field(alias="$literal")


class GetFieldOperator(_QueryNode):
    """``{"$getField": "dot.path"}``: a column, ``payload.<path>`` or ``<map>.<key>``."""

    get_field_: str = Field(alias="$getField")

    @field_validator("get_field_")
    @classmethod
    def _no_negative_index(cls, value: str) -> str:
        # Newer production refuses a negative payload array index in the model (422).
        if value.startswith("payload."):
            for part in value[len("payload.") :].split("."):
                if len(part) > 1 and part[0] == "-" and part[1:].isdigit():
                    raise ValueError(errors.NEGATIVE_ARRAY_INDEX.format(index=part, field=value))
        return value


class ConvertSpec(_QueryNode):
    """The body of ``$convert``: cast ``input`` to ``to`` (no inference)."""

    input: Operand
    to: CastTo


class ConvertOperation(_QueryNode):
    """``{"$convert": {"input": operand, "to": type}}``."""

    convert_: ConvertSpec = Field(alias="$convert")


class SizeOperation(_QueryNode):
    """``{"$size": operand}``: the number of elements of an array or map column."""

    size_: Operand = Field(alias="$size")


class AndOperation(_QueryNode):
    """``{"$and": [operands]}``."""

    and_: list[Operand] = Field(alias="$and")


class OrOperation(_QueryNode):
    """``{"$or": [operands]}``."""

    or_: list[Operand] = Field(alias="$or")


class NotOperation(_QueryNode):
    """``{"$not": [operand]}`` (exactly one)."""

    not_: tuple[Operand] = Field(alias="$not")


class EqOperation(_QueryNode):
    """``{"$eq": [a, b]}``."""

    eq_: tuple[Operand, Operand] = Field(alias="$eq")


class GtOperation(_QueryNode):
    """``{"$gt": [a, b]}``."""

    gt_: tuple[Operand, Operand] = Field(alias="$gt")


class GteOperation(_QueryNode):
    """``{"$gte": [a, b]}``."""

    gte_: tuple[Operand, Operand] = Field(alias="$gte")


class LtOperation(_QueryNode):
    """``{"$lt": [a, b]}``."""

    lt_: tuple[Operand, Operand] = Field(alias="$lt")


class LteOperation(_QueryNode):
    """``{"$lte": [a, b]}``."""

    lte_: tuple[Operand, Operand] = Field(alias="$lte")


class InOperation(_QueryNode):
    """``{"$in": [operand, [operands]]}``."""

    in_: tuple[Operand, list[Operand]] = Field(alias="$in")


class ContainsSpec(_QueryNode):
    """The body of ``$contains`` and ``$containsToken``."""

    input: Operand
    substr: Operand
    case_insensitive: bool | None = False


class ContainsOperation(_QueryNode):
    """``{"$contains": {"input", "substr", "case_insensitive"}}``."""

    contains_: ContainsSpec = Field(alias="$contains")


class ContainsTokenOperation(_QueryNode):
    """``{"$containsToken": {...}}``: accepted by the model, refused on feedback (400)."""

    contains_token_: ContainsSpec = Field(alias="$containsToken")


_OPERATION_TAGS: dict[str, str] = {
    "$and": "and",
    "$or": "or",
    "$not": "not",
    "$eq": "eq",
    "$gt": "gt",
    "$gte": "gte",
    "$lt": "lt",
    "$lte": "lte",
    "$in": "in",
    "$contains": "contains",
    "$containsToken": "containsToken",
}
_OPERAND_TAGS: dict[str, str] = {
    **_OPERATION_TAGS,
    "$literal": "literal",
    "$getField": "getField",
    "$convert": "convert",
    "$size": "size",
}


def _tagger(tags: dict[str, str]) -> Any:
    # The node's kind is its first key: validation goes straight to one model, so an
    # error names one path instead of one failure per union member and level.
    def tag(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            # A node's one field is aliased by its key. (Dumping the node to find it
            # would call this again for every node below: exponential in the depth.)
            alias = next(iter(type(value).model_fields.values())).alias
            return tags.get(alias) if alias is not None else None
        if isinstance(value, dict) and value:
            return tags.get(next(iter(value)))
        return None

    return tag


Operation = Annotated[
    Annotated[AndOperation, Tag("and")]
    | Annotated[OrOperation, Tag("or")]
    | Annotated[NotOperation, Tag("not")]
    | Annotated[EqOperation, Tag("eq")]
    | Annotated[GtOperation, Tag("gt")]
    | Annotated[GteOperation, Tag("gte")]
    | Annotated[LtOperation, Tag("lt")]
    | Annotated[LteOperation, Tag("lte")]
    | Annotated[InOperation, Tag("in")]
    | Annotated[ContainsOperation, Tag("contains")]
    | Annotated[ContainsTokenOperation, Tag("containsToken")],
    Discriminator(
        _tagger(_OPERATION_TAGS),
        custom_error_type="invalid_operation",
        custom_error_message="Input should be an operation: an object with one key of "
        + ", ".join(_OPERATION_TAGS),
    ),
]
Operand = Annotated[
    Annotated[LiteralOperation, Tag("literal")]
    | Annotated[GetFieldOperator, Tag("getField")]
    | Annotated[ConvertOperation, Tag("convert")]
    | Annotated[SizeOperation, Tag("size")]
    | Annotated[AndOperation, Tag("and")]
    | Annotated[OrOperation, Tag("or")]
    | Annotated[NotOperation, Tag("not")]
    | Annotated[EqOperation, Tag("eq")]
    | Annotated[GtOperation, Tag("gt")]
    | Annotated[GteOperation, Tag("gte")]
    | Annotated[LtOperation, Tag("lt")]
    | Annotated[LteOperation, Tag("lte")]
    | Annotated[InOperation, Tag("in")]
    | Annotated[ContainsOperation, Tag("contains")]
    | Annotated[ContainsTokenOperation, Tag("containsToken")],
    Discriminator(
        _tagger(_OPERAND_TAGS),
        custom_error_type="invalid_operand",
        custom_error_message="Input should be an operand: an object with one key of "
        + ", ".join(_OPERAND_TAGS),
    ),
]

_RECURSIVE_NODES: tuple[type[BaseModel], ...] = (
    ConvertSpec,
    SizeOperation,
    AndOperation,
    OrOperation,
    NotOperation,
    EqOperation,
    GtOperation,
    GteOperation,
    LtOperation,
    LteOperation,
    InOperation,
    ContainsSpec,
    ContainsOperation,
    ContainsTokenOperation,
    ConvertOperation,
)
for _node in _RECURSIVE_NODES:
    _node.model_rebuild()


class Query(_QueryNode):
    """``{"$expr": operation}``: the filter of query and purge requests."""

    expr_: Operation = Field(alias="$expr")


class SortBy(_Request):
    """One sort key: a field and ``asc`` / ``desc`` (lower case only)."""

    field: str
    direction: Literal["asc", "desc"]


class FeedbackQueryReq(_Request):
    """Body of ``POST /feedback/query``."""

    project_id: str
    fields: list[str] | None = Field(
        default=None, description="Columns to return, flat dotted keys; null or [] = all."
    )
    query: Query | None = None
    sort_by: list[SortBy] | None = None
    limit: int | None = None
    offset: int | None = None


class FeedbackQueryRes(BaseModel):
    """The matching rows (after sort, offset, limit) and how many matched in all."""

    result: list[dict[str, Any]]
    total_count: int = Field(description="Rows matching project and query, before limit/offset.")


class FeedbackPurgeReq(_Request):
    """Body of ``POST /feedback/purge``: delete feedback by id."""

    project_id: str
    query: Query


class FeedbackPurgeRes(BaseModel):
    """Empty: ``{}``."""


class FeedbackReplaceReq(FeedbackCreateReq):
    """A create request plus the id of the row it replaces."""

    feedback_id: str


class FeedbackReplaceRes(FeedbackCreateRes):
    """The create response of the new row."""


class FeedbackPayloadSchemaReq(_Request):
    """Body of ``POST /feedback/payload_schema``: the stats filters plus a sample size."""

    project_id: str
    start: datetime = Field(description="Inclusive start; naive means UTC.")
    end: datetime | None = Field(
        default=None, description="Exclusive end; naive means UTC; null means now."
    )
    feedback_type: str | None = None
    trigger_ref: str | None = None
    sample_limit: int = Field(default=2000, ge=1, le=5000)

    @field_validator("start", "end")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return as_utc(value)
        except OverflowError:
            raise ValueError("datetime is out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _check_range(self) -> FeedbackPayloadSchemaReq:
        if self.end is not None:
            if self.end < self.start:
                raise ValueError(errors.END_BEFORE_START)
            if self.end - self.start > timedelta(days=MAX_RANGE_DAYS):
                raise ValueError(errors.STATS_RANGE_TOO_LONG)
        return self


class PayloadSchemaPath(BaseModel):
    """One discovered ``json_path`` and its value type."""

    json_path: str
    value_type: Literal["numeric", "boolean", "categorical"]


class FeedbackPayloadSchemaRes(BaseModel):
    """The discovered paths, sorted by ``json_path``."""

    paths: list[PayloadSchemaPath]


class ServerInfoRes(BaseModel):
    """Response of ``GET /server_info``."""

    min_required_weave_python_version: str
    trace_server_version: str | None = None
