"""The stored feedback row: every production column plus keys derived once at insert.

A :class:`FeedbackRow` is an immutable tuple (``typing.NamedTuple``: no per-instance
``__dict__``, C-level field access). Its members are immutable too: strings,
numbers, tuples, and :class:`refengine.frozenmap.FrozenMap` for the scorer maps.
The payload is kept as production keeps it, as its ``json.dumps`` text
(``payload_dump``); ``row.payload`` parses it, so every caller gets a dict of its
own.

Columns follow the production ``feedback`` table (spec/SEMANTICS.md, "The stored
row"); ``created_at`` is kept twice: ``created_at_us`` (what the create response
shows) and ``created_at_ms`` (the stored ``DateTime64(3)`` value every query sees).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, NamedTuple

from .frozenmap import EMPTY, FrozenMap, shared_keys
from .refs import object_name, span_type

STATUS_CODES: tuple[str, ...] = ("UNSET", "OK", "ERROR")
"""``span_status_code`` values in enum order (ClickHouse ``Enum8`` 0, 1, 2)."""

STATUS_ORDER: dict[str, int] = {code: i for i, code in enumerate(STATUS_CODES)}

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class FeedbackRow(NamedTuple):
    """One stored feedback row. Field order is the dump order."""

    id: str
    project_id: str
    weave_ref: str
    wb_user_id: str
    creator: str | None
    created_at_us: int  # µs since the Unix epoch, as the create response reports it
    feedback_type: str
    payload_dump: str  # the payload's json.dumps text (Python's defaults), as stored
    annotation_ref: str | None
    runnable_ref: str | None
    call_ref: str | None
    trigger_ref: str | None
    queue_id: str | None
    scorer_tags: tuple[str, ...]
    scorer_tag_reasons: Mapping[str, str]
    scorer_tag_confidences: Mapping[str, float]
    scorer_ratings: Mapping[str, float]
    scorer_rating_reasons: Mapping[str, str]
    scorer_rating_confidences: Mapping[str, float]
    span_agent_name: str
    span_agent_version: str
    span_status_code: str
    span_conversation_id: str
    span_trace_id: str
    scorer_trace_id: str
    # --- derived once at insert (never dumped) ---
    created_at_ms: int  # the stored DateTime64(3) value: floor(created_at_us / 1000)
    scorer_id: str  # object name of runnable_ref
    monitor_id: str  # object name of trigger_ref
    span_type: str  # second-to-last segment of weave_ref

    @property
    def payload(self) -> dict[str, Any]:
        """The stored payload, parsed: a new dict on every access. ``O(len(payload_dump))``."""
        parsed: dict[str, Any] = json.loads(self.payload_dump)
        return parsed

    @property
    def created_at(self) -> datetime:
        """The stored (millisecond) created_at as an aware UTC datetime."""
        return EPOCH + timedelta(milliseconds=self.created_at_ms)


STORED_COLUMNS: tuple[str, ...] = tuple(
    "payload" if name == "payload_dump" else name
    for name in FeedbackRow._fields[: FeedbackRow._fields.index("created_at_ms")]
)
"""The columns a row stores (and a dump writes), ``payload`` read as an object; the
rest are derived."""


_intern = sys.intern
# Refs, names and ids repeat across millions of rows; one copy each saves memory.
# Optional columns are interned as ``value and _intern(value)``: None stays None.


def with_id(row: FeedbackRow, ident: str) -> FeedbackRow:
    """``row`` with its ``id`` set to ``ident`` (a new tuple; ``row`` is unchanged).

    >>> row = make_row(id="", project_id="e/p", weave_ref="r", wb_user_id="u",
    ...                creator=None, created_at_us=0, feedback_type="custom", payload={})
    >>> with_id(row, "x").id, row.id
    ('x', '')
    """
    # One C-level tuple build: ``_replace`` walks every field in Python.
    return tuple.__new__(FeedbackRow, (ident, *row[1:]))


def make_row(
    *,
    id: str,
    project_id: str,
    weave_ref: str,
    wb_user_id: str,
    creator: str | None,
    created_at_us: int,
    feedback_type: str,
    payload: dict[str, Any],
    annotation_ref: str | None = None,
    runnable_ref: str | None = None,
    call_ref: str | None = None,
    trigger_ref: str | None = None,
    queue_id: str | None = None,
    scorer_tags: tuple[str, ...] | list[str] = (),
    scorer_tag_reasons: Mapping[str, str] = EMPTY,
    scorer_tag_confidences: Mapping[str, float] = EMPTY,
    scorer_ratings: Mapping[str, float] = EMPTY,
    scorer_rating_reasons: Mapping[str, str] = EMPTY,
    scorer_rating_confidences: Mapping[str, float] = EMPTY,
    span_agent_name: str = "",
    span_agent_version: str = "",
    span_status_code: str = "UNSET",
    span_conversation_id: str = "",
    span_trace_id: str = "",
    scorer_trace_id: str = "",
) -> FeedbackRow:
    """Build a row from its stored columns, computing the derived keys. O(size of refs).

    Maps are copied into :class:`FrozenMap` (empty ones shared); the payload is
    stored as its JSON text (:func:`payload_text`: ``ValueError`` for NaN or
    Infinity, ``TypeError`` for a value JSON cannot hold).
    """
    return build_row(
        id,
        project_id,
        weave_ref,
        wb_user_id,
        creator,
        created_at_us,
        feedback_type,
        payload_text(payload),
        annotation_ref,
        runnable_ref,
        call_ref,
        trigger_ref,
        queue_id,
        scorer_tags,
        scorer_tag_reasons,
        scorer_tag_confidences,
        scorer_ratings,
        scorer_rating_reasons,
        scorer_rating_confidences,
        span_agent_name,
        span_agent_version,
        span_status_code,
        span_conversation_id,
        span_trace_id,
        scorer_trace_id,
    )


def build_row(  # noqa: PLR0917 - positional on purpose: the create hot path
    id: str,
    project_id: str,
    weave_ref: str,
    wb_user_id: str,
    creator: str | None,
    created_at_us: int,
    feedback_type: str,
    payload_dump: str,
    annotation_ref: str | None,
    runnable_ref: str | None,
    call_ref: str | None,
    trigger_ref: str | None,
    queue_id: str | None,
    scorer_tags: tuple[str, ...] | list[str],
    scorer_tag_reasons: Mapping[str, str],
    scorer_tag_confidences: Mapping[str, float],
    scorer_ratings: Mapping[str, float],
    scorer_rating_reasons: Mapping[str, str],
    scorer_rating_confidences: Mapping[str, float],
    span_agent_name: str,
    span_agent_version: str,
    span_status_code: str,
    span_conversation_id: str,
    span_trace_id: str,
    scorer_trace_id: str,
    /,
) -> FeedbackRow:
    """:func:`make_row` with every stored column positional, in ``STORED_COLUMNS``
    order and the payload already serialised — the create hot path's form (binding
    25 keywords costs more than the rest of the row).

    The stored row / created_at is stored in milliseconds: ``created_at_ms`` is
    ``created_at_us`` truncated. The stored row / Derived keys: ``scorer_id`` and
    ``monitor_id`` are the object names of ``runnable_ref`` and ``trigger_ref``, the
    span type the second-to-last segment of ``weave_ref`` (see
    :func:`refengine.refs.object_name` and :func:`refengine.refs.span_type`).
    """
    tags = shared_keys(tuple(scorer_tags)) if scorer_tags else ()
    ratings = FrozenMap(scorer_ratings) if scorer_ratings else EMPTY
    # Rows stamped in the same millisecond (a burst, a batch, a fixed test clock)
    # share their timestamp ints: 32 bytes each otherwise.
    stamp = _last_stamp[0]
    if created_at_us == stamp[0]:
        created_at_us, created_at_ms = stamp
    else:
        created_at_ms = created_at_us // 1000
        if created_at_ms == stamp[1]:
            created_at_ms = stamp[1]
        _last_stamp[0] = (created_at_us, created_at_ms)
    # Positional construction: a NamedTuple built from 29 keywords costs several
    # times more, and make_row is on the create hot path.
    return _new_row(
        FeedbackRow,
        (
            id,
            _intern(project_id),
            weave_ref,
            _intern(wb_user_id),
            creator and _intern(creator),
            created_at_us,
            _intern(feedback_type),
            payload_dump,
            annotation_ref and _intern(annotation_ref),
            runnable_ref and _intern(runnable_ref),
            call_ref,
            trigger_ref and _intern(trigger_ref),
            queue_id and _intern(queue_id),
            tags,
            FrozenMap(scorer_tag_reasons) if scorer_tag_reasons else EMPTY,
            FrozenMap(scorer_tag_confidences) if scorer_tag_confidences else EMPTY,
            ratings,
            FrozenMap(scorer_rating_reasons) if scorer_rating_reasons else EMPTY,
            FrozenMap(scorer_rating_confidences) if scorer_rating_confidences else EMPTY,
            _intern(span_agent_name),
            _intern(span_agent_version),
            _intern(span_status_code),
            span_conversation_id,
            span_trace_id,
            scorer_trace_id,
            created_at_ms,
            _derived_name(runnable_ref),
            _derived_name(trigger_ref),
            _intern(span_type(weave_ref)),
        ),
    )


_new_row = tuple.__new__

_last_stamp: list[tuple[int, int]] = [(-1, -1)]
# [(created_at_us, created_at_ms)] of the last row built. The pair is replaced whole,
# so a reader in another thread sees a consistent one (at worst an older one, which
# only means no sharing).


@lru_cache(maxsize=4096)
def _derived_name(ref: str | None) -> str:
    # Scorer and monitor refs repeat across rows: derive each name once.
    return sys.intern(object_name(ref))


def _payload_encoder() -> Callable[[Mapping[str, Any]], str]:
    # json.dumps' settings but for allow_nan. JSONEncoder.encode builds a new C
    # encoder on every call, which costs a third of encoding a small payload; this
    # one C encoder serves every call. It keeps no memo of the containers it is in
    # (so threads can share it), which makes a payload that contains itself recurse
    # until RecursionError: whenever it fails, the standard encoder runs again to
    # raise the standard error ("Circular reference detected", ...).
    checked = json.JSONEncoder(allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return checked.encode
    fast = make(
        None,
        checked.default,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        False,
    )
    join = "".join

    def encode(payload: Mapping[str, Any]) -> str:
        try:
            return join(fast(payload, 0))
        except (ValueError, TypeError, RecursionError):
            return checked.encode(payload)

    return encode


payload_text = _payload_encoder()
"""The payload as production stores it: ``json.dumps`` with Python's defaults
(ASCII escapes, ``", "`` and ``": "`` separators, keys in their order).

Where ``json.dumps`` would write ``NaN`` or ``Infinity`` this raises ``ValueError``
instead; a value JSON cannot hold raises ``TypeError``, a payload that contains
itself ``ValueError``. ``O(size of the payload)``. (The encoder itself, not a
wrapper around it: one call less per create.)"""


def datetime_to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact integer maths)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


def stored_columns(row: FeedbackRow) -> dict[str, Any]:
    """The stored columns of ``row`` as a plain dict (payload and maps are copies)."""
    out: dict[str, Any] = {}
    for name in STORED_COLUMNS:
        value = getattr(row, name)
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out
