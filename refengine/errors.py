"""Every error refengine raises, and every message it says, in one place.

Two kinds of failure exist, as in production:

* a **request-model error** — the body does not fit the published model. These are
  pydantic ``ValidationError``s (HTTP 422 with the ``HTTPValidationError`` body). The
  messages used inside model validators are defined here too.
* a **semantic error** — the body fits the model but breaks a rule of the endpoint.
  These are :class:`InvalidRequest` (HTTP 400 with ``{"reason": message}``).

Messages that production defines are reproduced verbatim (conformance testers match
on them); messages for refengine's own decisions are marked ``# refengine``.
"""

from __future__ import annotations

from typing import Any


class InvalidRequest(ValueError):
    """A request that fits the model but breaks a semantic rule (HTTP 400).

    ``str(error)`` and ``error.reason`` are the message production would send in
    ``{"reason": ...}``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendUnavailable(RuntimeError):
    """The storage behind a backend failed to answer (HTTP 503 with ``{"reason": ...}``):
    a ClickHouse server that is down or timed out, or a query the database refused.

    Never a request error: the same request may succeed once the database is back.
    ``error.reason`` names the backend and the database's own message.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DumpFormatError(ValueError):
    """A JSON Lines dump that cannot be loaded; names the line and the reason."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


# --- POST /feedback/create (SEMANTICS §create) ---------------------------------------

NO_USER = "wb_user_id cannot be None"
INVALID_PAYLOAD = "Invalid payload for feedback_type {feedback_type}: {detail}"
INVALID_ANNOTATION_TYPE = "Invalid annotation feedback type: {feedback_type}"
ANNOTATION_REF_REQUIRED = "annotation_ref is required for annotation feedback"
ANNOTATION_REF_NAME = "annotation_ref must point to an object with name {name}"
ANNOTATION_REF_NOT_ALLOWED = "annotation_ref is not allowed for non-annotation feedback"
INVALID_RUNNABLE_TYPE = "Invalid runnable feedback type: {feedback_type}"
RUNNABLE_REF_REQUIRED = "runnable_ref is required for runnable feedback"
RUNNABLE_REF_NAME = "runnable_ref must point to an object with name {name}"
CALL_REF_REQUIRED_FOR_OPS = "call_ref is required for runnable feedback on ops"
AGENT_MONITOR_FIELD_REQUIRED = "{field} is required for agent monitor feedback"
NOT_ALLOWED_FOR_NON_RUNNABLE = "{field} is not allowed for non-runnable feedback"
SCORER_COLUMNS_RESERVED = (
    "scorer_tags, scorer_tag_reasons, scorer_tag_confidences, scorer_ratings, "
    "scorer_rating_reasons, and scorer_rating_confidences are only allowed on "
    "wandb.agent_monitor, wandb.agent_user_feedback, or wandb.runnable feedback"
)
USER_FEEDBACK_TAGS_REQUIRED = "scorer_tags is required for agent user feedback"
INVALID_REF = "Invalid ref: {ref} ({field} must be {kind})"
ANNOTATION_REF_PROJECT = "Annotation ref {ref} does not match project id {project_id}"
CONVERSATION_ID_CONFLICT = (
    "feedback span_conversation_id {given!r} conflicts with conversation ref {from_ref!r}"
)
TRACE_ID_ON_CONVERSATION = (
    "feedback span_trace_id {given!r} cannot be supplied for conversation-targeted feedback"
)
TRACE_ID_CONFLICT = "feedback span_trace_id {given!r} conflicts with turn ref {from_ref!r}"
EMOJI_NOT_ONE = "Value of emoji key in payload must be exactly one emoji"
PAYLOAD_TOO_LARGE = "Feedback payload too large"
BATCH_TOO_LARGE = (  # refengine: Create / Batches
    "a batch may hold at most {limit:,} items, got {count:,}: send it in several batches"
)
PAYLOAD_TOO_DEEP = (  # refengine: Create / 8. Payload processing and the size limit
    "payload nests objects and arrays more than {limit} levels deep"
)
PAYLOAD_NOT_JSON = "payload cannot be stored as JSON: {detail}"  # refengine (in-process only)
NON_FINITE = (  # refengine
    "{where} contains a non-finite number ({value}); NaN and Infinity are not JSON "
    "and would make the stored row unreadable"
)
UNSTORABLE_TEXT = (  # refengine: production fails the insert with a server error
    "{field} holds a lone surrogate ({char}), which UTF-8 cannot store"
)
BAD_STATUS_CODE = (  # refengine: production fails the insert with a server error
    "span_status_code must be one of UNSET, OK, ERROR, got: {value!r}"
)

# --- POST /feedback/aggregate (request-model errors) ---------------------------------

BEFORE_NOT_AFTER = "before_ms must be greater than after_ms"
OVER_31_DAYS_NOT_TOTAL = (
    "Feedback requests over 31 days must be a project-wide total: "
    "no time_bucket_seconds, no group_by, and no filters."
)
TOO_MANY_AGG_BUCKETS = "Feedback request range cannot exceed 256 buckets"

# --- POST /feedback/stats ------------------------------------------------------------

END_BEFORE_START = "Feedback request end must be after start"  # request-model error
STATS_RANGE_TOO_LONG = "Feedback request date range cannot exceed 31 days"  # model error
DATETIME_OUT_OF_RANGE = "datetime is out of range once converted to UTC"  # model error
JSON_PATH_EMPTY = "json_path cannot be empty"
JSON_PATH_CHARS = "json_path may only contain [a-zA-Z0-9_. ], got: {path!r}"
PERCENTILE_RANGE = "Percentile must be between 0 and 100, got {p}"
UNKNOWN_TIMEZONE = "Unknown timezone {tz!r}: expected an IANA time zone name"  # refengine
NEGATIVE_GRANULARITY = (  # refengine
    "granularity must be >= 0 (0 or null picks it from the range), got {g}"
)
DUPLICATE_SLUG = (  # refengine
    "metrics {first!r} and {second!r} share the slug {slug!r}; each metric needs its own"
)
CATEGORICAL_AGG = (  # refengine
    "categorical metric {path!r} supports only the 'count' aggregation, got {what}"
)
KEY_CLASH = (  # refengine: production would send two columns under one alias
    "metrics {first!r} and {second!r} both produce the bucket key {key!r}; rename one path"
)
TOO_MANY_METRICS = (  # refengine: Stats / Limits
    "a stats request may ask for at most {limit} metrics, got {count}"
)
JSON_PATH_TOO_LONG = (  # refengine: Stats / Limits
    "json_path may be at most {limit} characters long, got {length} starting {start!r}"
)
TOO_MANY_STATS_VALUES = (  # refengine: Stats / Limits
    "a stats answer may hold at most {limit:,} values, (buckets + 1) * (aggregations and "
    "percentiles of all metrics); this one would hold ({buckets:,} + 1) * {keys:,} = {count:,}: "
    "ask for fewer aggregations or a coarser granularity"
)
GRANULARITY_TOO_LARGE = (  # refengine: the first bucket would start before year 1
    "granularity {g} is too large: the first bucket would start before 0001-01-01"
)

# --- HTTP server -----------------------------------------------------------------------

DATE_OUT_OF_RANGE = "Value error, date value out of range"  # a 422 item's msg
ENDPOINT_NOT_SUPPORTED = "{backend} does not implement {name} yet"  # HTTP 501
NOT_AUTHENTICATED = "Not authenticated: send HTTP Basic credentials api:<key>"
INVALID_API_KEY = "Invalid API key"
CLOCK_NOT_MANUAL = (  # refengine's test control, POST /refengine/clock (409)
    "the engine clock is not manual: start the server with --clock ISO8601 "
    "(or an Engine on a ManualClock) to set it"
)

# --- engine --------------------------------------------------------------------------

UNKNOWN_FIELDS_MODE = "unknown_fields must be 'reject' or 'ignore', got {value!r}"  # refengine
UNKNOWN_EXECUTOR = "unknown executor {name!r}: expected one of {choices}"

# --- backends (refengine[clickhouse]) -----------------------------------------------

BACKEND_FAILED = "{backend} failed: {detail}"  # refengine: HTTP 503
BACKEND_EXTRA_MISSING = (  # refengine
    "the {backend} backend needs the clickhouse extra ({missing} is missing): "
    "pip install 'refengine[clickhouse]'"
)
BACKEND_BAD_SPEC = (  # refengine
    "unknown backend {spec!r}: expected 'memory', 'chdb', 'chdb:DIR' or a "
    "clickhouse://[user[:password]@]host[:port][/database] URL"
)
BACKEND_BAD_URL = "bad ClickHouse URL {url!r}: {problem}"  # refengine; the password shown as ***
BACKEND_URL_NO_HOST = "no host"
BACKEND_URL_BAD_PORT = "the port must be a number from 1 to 65535"
BACKEND_URL_BAD_DATABASE = (
    "the database name must be letters, digits and underscores, not starting with a digit"
)
BACKEND_URL_EXTRA = "a query string or fragment is not understood"
BACKEND_NOT_JSON_COMPACT = "the answer is not JSONCompact ({detail})"

LOAD_BAD_JSON = "not valid JSON: {detail}"
LOAD_BAD_ROW = "not a feedback row: {detail}"
LOAD_CREATED_AT_RANGE = "created_at {text} is out of range once converted to UTC"
LOAD_NOT_OBJECT = "expected a JSON object, got {kind}"
LOAD_MISSING_COLUMNS = "missing column(s) {columns}"
LOAD_UNKNOWN_COLUMNS = "unknown column(s) {columns}"
LOAD_BAD_COLUMN = "column {column} must be a {kind}, got {value!r:.80}"
LOAD_BAD_TIMESTAMP = "created_at is not an ISO 8601 timestamp: {text!r:.80}"
CONFORMANCE_BAD_TARGET = (
    "--target must be 'inprocess' or an http(s):// URL (or, with refengine[clickhouse], "
    "'chdb', 'chdb:DIR' or a clickhouse:// URL), got {spec!r}"
)
LOAD_NAIVE_TIMESTAMP = "created_at needs a UTC offset: {text!r:.80}"


def format_message(template: str, **fields: Any) -> str:
    """Fill a message template; the one place messages are rendered."""
    return template.format(**fields)


def redact_credentials(spec: str) -> str:
    """``spec`` with the password of a ``scheme://user:password@host`` URL shown as
    ``***``, for messages.

    >>> redact_credentials("clickhouse://me:s3cret@db.example:8123/feedback")
    'clickhouse://me:***@db.example:8123/feedback'
    >>> redact_credentials("chdb:/tmp/x")
    'chdb:/tmp/x'
    """
    scheme, sep, rest = spec.partition("://")
    authority = rest.split("/", 1)[0]
    userinfo, at, _host = authority.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return spec
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{rest[len(userinfo) + 1 :]}"


# --- The Query language (SEMANTICS "Query") -----------------------------------------

UNKNOWN_FIELD = "Unknown field: {field}"
UNKNOWN_VALUE_TYPE = "Unknown value type: {value!r}"
EMPTY_AND = "Empty AND operation"
EMPTY_OR = "Empty OR operation"
NO_COMMON_TYPE = "No common type between data types in query. Cannot compare {left} with {right}"
ILLEGAL_TYPE = "Illegal type of argument in query. {function} does not accept {kind}"
NEGATIVE_ARRAY_INDEX = (
    "Negative array index '{index}' in field {field}: payload array indexes start at 0"
)
CONTAINS_TOKEN_UNSUPPORTED = (  # refengine: production answers 500
    "$containsToken is not supported on feedback; use $contains"
)
BAD_DATETIME_LITERAL = (  # refengine: production fails in the database (502)
    "Cannot compare created_at with {value!r}: expected an ISO 8601 date or time, or epoch seconds"
)
UNADDRESSABLE_PAYLOAD_KEY = (  # refengine: production's JSON path fails in the database (502)
    "Cannot read payload path {field}: a key of a payload path may not be empty or contain "
    "'\"' or '\\'"
)
BAD_NUMBER_LITERAL = (  # refengine: production fails in the database (502)
    "Cannot compare a number with {value!r}: the string is not a number"
)
QUERY_TOO_LARGE = (  # refengine: bounded work
    "Query expression too large: at most {limit} nodes, got more"
)
QUERY_TOO_DEEP = (  # refengine: bounded work
    "Query expression too deeply nested: at most {limit} levels"
)

# --- POST /feedback/query (SEMANTICS "Query") ----------------------------------------

NEGATIVE_LIMIT = "Limit must be non-negative"
NEGATIVE_OFFSET = "Offset must be non-negative"
COUNT_WITH_FIELDS = (  # refengine: production fails in the database
    "count(*) cannot be combined with other fields"
)
TOO_MANY_FIELDS = "At most {limit} fields may be requested, got {count}"  # refengine
TOO_MANY_SORT_KEYS = "At most {limit} sort_by entries are allowed, got {count}"  # refengine

# --- POST /feedback/purge (SEMANTICS "Purge") ----------------------------------------

PURGE_BY_IDS = "Can only purge feedback by specifying one or more feedback ids"
PURGE_ITEM_BY_IDS = "Can only purge by specifying one or more ids"
PURGE_EXPECTED_EQ = "Expected key eq_, got {got}"
PURGE_TOO_MANY_IDS = (  # refengine: bounded work
    "At most {limit} feedback ids can be purged in one request, got {count}"
)
