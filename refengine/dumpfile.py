"""The JSON Lines dump format: one stored row per line, every column, exactly.

Each line is a JSON object whose keys are the stored columns of
:class:`refengine.rows.FeedbackRow`, except that ``created_at_us`` is written as
``created_at``, an ISO 8601 UTC timestamp with microseconds
(``"2024-05-01T12:00:00.123456+00:00"``), so that the file loads into other
backends as it stands. Strings are ASCII-escaped, floats are written with Python's
shortest round-trip repr, so ``load(dump(rows)) == rows`` exactly.

Rows are written project by project, each in store order; loading appends them in
file order, which keeps the order of rows that share a millisecond.

Loading is strict: a line that is not JSON, misses a column, has an unknown
column, has a value of the wrong type (a rating that is no finite float, such as a
400-digit integer), has a ``created_at`` outside years 1-9999 once in UTC, or has
a payload no created row could hold (NaN or Infinity in it) fails with the line
number and the reason. Repeated ids are not an error: production allows them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from . import errors
from .errors import DumpFormatError, format_message
from .rows import (
    STATUS_CODES,
    STORED_COLUMNS,
    FeedbackRow,
    datetime_to_us,
    make_row,
    stored_columns,
    us_to_datetime,
)

DUMP_COLUMNS: tuple[str, ...] = tuple(
    "created_at" if name == "created_at_us" else name for name in STORED_COLUMNS
)

_STR = "string"
_OPT_STR = "string or null"
_COLUMN_KINDS: dict[str, str] = dict.fromkeys(DUMP_COLUMNS, _STR)
_COLUMN_KINDS.update(
    {
        "creator": _OPT_STR,
        "annotation_ref": _OPT_STR,
        "runnable_ref": _OPT_STR,
        "call_ref": _OPT_STR,
        "trigger_ref": _OPT_STR,
        "queue_id": _OPT_STR,
        "created_at": "timestamp",
        "payload": "object",
        "scorer_tags": "list of strings",
        "scorer_tag_reasons": "map of strings",
        "scorer_rating_reasons": "map of strings",
        "scorer_tag_confidences": "map of numbers",
        "scorer_ratings": "map of numbers",
        "scorer_rating_confidences": "map of numbers",
        "span_status_code": "status",
    }
)


def row_to_line(row: FeedbackRow) -> str:
    """One row as one line of JSON (no trailing newline). O(size of row)."""
    columns = stored_columns(row)
    columns["created_at_us"] = us_to_datetime(row.created_at_us).isoformat(timespec="microseconds")
    record = {
        name: columns["created_at_us" if name == "created_at" else name] for name in DUMP_COLUMNS
    }
    return json.dumps(record, allow_nan=False)


def write_rows(rows: Iterable[FeedbackRow], out: IO[str]) -> int:
    """Write ``rows`` as JSON Lines to ``out``; returns the number written."""
    count = 0
    for row in rows:
        out.write(row_to_line(row))
        out.write("\n")
        count += 1
    return count


def read_rows(
    path: str | Path,
    track: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> list[FeedbackRow]:
    """Parse a whole dump file; raise :class:`DumpFormatError` at the first bad line.

    Nothing is returned unless every line is valid, so a caller that stores the
    result only after this returns can never half-load a file. Bytes that are not
    UTF-8 are a bad line too. ``track`` may wrap the line iterator (a progress
    counter, say). O(size of file).
    """
    name = str(path)

    def decoded(raw_lines: Iterable[bytes]) -> Iterator[str]:
        # Decoded line by line (not by the text reader's 8 KiB chunks) so that a
        # bad byte is reported on its own line.
        for number, raw in enumerate(raw_lines, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DumpFormatError(name, number, f"not UTF-8 text ({exc.reason})") from None

    with open(path, "rb") as handle:
        lines = decoded(handle)
        return list(parse_lines(name, track(lines) if track else lines))


def parse_lines(name: str, lines: Iterable[str]) -> Iterator[FeedbackRow]:
    """Rows from dump lines (``name`` labels errors); raises at the first bad line.

    A generator, so a caller can report progress; collect it fully before storing
    anything to keep loading all or nothing.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise DumpFormatError(
                name, number, format_message(errors.LOAD_BAD_JSON, detail=exc)
            ) from None
        try:
            yield row_from_record(record)
        except ValueError as exc:
            raise DumpFormatError(
                name, number, format_message(errors.LOAD_BAD_ROW, detail=exc)
            ) from None


def row_from_record(record: Any) -> FeedbackRow:
    """Build a row from one decoded dump record; ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(format_message(errors.LOAD_NOT_OBJECT, kind=type(record).__name__))
    missing = [name for name in DUMP_COLUMNS if name not in record]
    if missing:
        raise ValueError(format_message(errors.LOAD_MISSING_COLUMNS, columns=", ".join(missing)))
    unknown = sorted(set(record) - set(DUMP_COLUMNS))
    if unknown:
        raise ValueError(format_message(errors.LOAD_UNKNOWN_COLUMNS, columns=", ".join(unknown)))
    for column, kind in _COLUMN_KINDS.items():
        if not _fits(record[column], kind):
            raise ValueError(
                format_message(
                    errors.LOAD_BAD_COLUMN, column=column, kind=kind, value=record[column]
                )
            )
    values = {name: record[name] for name in DUMP_COLUMNS if name != "created_at"}
    for column, kind in _COLUMN_KINDS.items():
        if kind == "map of numbers":  # the production columns are Float64
            values[column] = {key: float(v) for key, v in values[column].items()}
    values["created_at_us"] = datetime_to_us(_parse_timestamp(record["created_at"]))
    return make_row(**values)


def _fits(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _OPT_STR:
        return value is None or isinstance(value, str)
    if kind == "timestamp":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "list of strings":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "map of strings":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == "map of numbers":
        return isinstance(value, dict) and all(_is_finite_number(v) for v in value.values())
    if kind == "status":
        return value in STATUS_CODES
    raise AssertionError(kind)


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (the column is Float64)
        return False


def _parse_timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(format_message(errors.LOAD_BAD_TIMESTAMP, text=text)) from None
    if moment.tzinfo is None:
        raise ValueError(format_message(errors.LOAD_NAIVE_TIMESTAMP, text=text))
    try:
        # Stored and written back in UTC: an instant the calendar cannot hold there
        # (0001-01-01T00:00:00+01:00) would load, then break every later dump.
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(
            format_message(errors.LOAD_CREATED_AT_RANGE, text=f"{text!r:.80}")
        ) from None
