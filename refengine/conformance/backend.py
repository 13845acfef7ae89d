"""The :class:`Backend` protocol: what a system under test offers the conformance kit.

Every method takes a plain JSON-shaped request body (the dict a client would POST)
and returns an :class:`Outcome` — never raises for an API-level error. A backend
that cannot answer at all (connection refused, a crash) also returns an outcome,
with status 0 or 5xx and a message, so a broken target is a failed case, not a
crashed run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

JSON = Any
"""A JSON-shaped value: dict, list, str, int, float, bool or None."""

ENDPOINTS = (
    "create",
    "create_batch",
    "aggregate",
    "stats",
    "query",
    "purge",
    "replace",
    "payload_schema",
    "server_info",
)


@dataclass(frozen=True)
class Outcome:
    """One answer from a backend.

    ``status`` is the HTTP status (200, 400, 422, ...; 0 when no response came);
    ``body`` the parsed JSON body (``None`` when there was none or it was not JSON);
    ``message`` the error message for a non-200 status: the ``reason`` of a 400, the
    ``msg`` of each 422 ``detail`` item joined with ``"; "``, or a description of
    what went wrong.
    """

    status: int
    body: JSON = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "message": self.message}


class ConformanceError(RuntimeError):
    """The kit itself cannot proceed (a target without a clock hook, a bad case file)."""


class TargetUnavailable(ConformanceError):
    """The target cannot run any case: unreachable, refusing the credentials, or
    without the clock route. Reported once, in one line, and the run stops: these
    are not differences, so no case fails for them and no skip entry is suggested."""


@runtime_checkable
class Backend(Protocol):
    """A feedback backend under test.

    ``new_project()`` returns a project id no earlier case used, so each case starts
    from an empty project. ``set_clock(instant)`` makes ``instant`` (ISO 8601) the
    creation time of the following creates and the "now" of a stats request without
    ``end``; it raises :class:`ConformanceError` if the backend cannot do that.
    """

    name: str

    def feedback_create(self, request: dict[str, Any]) -> Outcome: ...

    def feedback_create_batch(self, request: dict[str, Any]) -> Outcome: ...

    def feedback_aggregate(self, request: dict[str, Any]) -> Outcome: ...

    def feedback_stats(self, request: dict[str, Any]) -> Outcome: ...
    def feedback_query(self, request: dict[str, Any]) -> Outcome: ...
    def feedback_purge(self, request: dict[str, Any]) -> Outcome: ...
    def feedback_replace(self, request: dict[str, Any]) -> Outcome: ...
    def feedback_payload_schema(self, request: dict[str, Any]) -> Outcome: ...
    def server_info(self) -> Outcome: ...

    def new_project(self) -> str: ...

    def set_clock(self, instant: str) -> None: ...


def call(backend: Backend, endpoint: str, request: dict[str, Any]) -> Outcome:
    """Send ``request`` to ``endpoint`` (one of :data:`ENDPOINTS`) on ``backend``."""
    if endpoint == "create":
        return backend.feedback_create(request)
    if endpoint == "create_batch":
        return backend.feedback_create_batch(request)
    if endpoint == "aggregate":
        return backend.feedback_aggregate(request)
    if endpoint == "stats":
        return backend.feedback_stats(request)
    if endpoint == "query":
        return backend.feedback_query(request)
    if endpoint == "purge":
        return backend.feedback_purge(request)
    if endpoint == "replace":
        return backend.feedback_replace(request)
    if endpoint == "payload_schema":
        return backend.feedback_payload_schema(request)
    if endpoint == "server_info":
        return backend.server_info()  # a GET: the step's request is not sent
    raise ConformanceError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")


def error_message(status: int, body: JSON) -> str | None:
    """The message of an error body: a 400 ``reason``, or the 422 ``detail`` msgs."""
    if status == 200:
        return None
    if isinstance(body, dict):
        reason = body.get("reason")
        if isinstance(reason, str):
            return reason
        detail = body.get("detail")
        if isinstance(detail, list):
            msgs = [str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail]
            return "; ".join(msgs)
        if isinstance(detail, str):
            return detail
    return f"status {status} with an unrecognised error body: {_short(body)}"


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
