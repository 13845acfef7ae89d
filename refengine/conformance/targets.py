"""Targets: the in-process engine, and any HTTP server speaking the feedback API."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import errors
from ..clock import ManualClock
from ..engine import Engine, FeedbackService
from ..errors import BackendUnavailable, InvalidRequest, format_message
from ..models import UnknownFields
from .backend import JSON, Outcome, TargetUnavailable, error_message

DEFAULT_INSTANT = "2024-01-01T00:00:00Z"
"""The clock of a fresh target, and of every case before its first ``at``."""


def counting_ids(prefix: str = "00000000-0000-7000-8000-") -> Callable[[], str]:
    """A deterministic id factory (``...000000000001``, ``...2``, ...)."""
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):012d}"


def validation_detail(exc: ValidationError) -> list[Any]:
    """The JSON ``detail`` list FastAPI would send for ``exc``."""
    detail: list[Any] = json.loads(exc.json(include_url=False))
    return detail


class InProcessTarget:
    """An in-process :class:`~refengine.Engine` with a manual clock, folding queries
    with ``executor``: ``"reference"`` (default) for the oracle and the catalogue's
    expectations, ``"fast"`` to check the fast executor as a backend.

    Errors become outcomes exactly as the HTTP server renders them: pydantic
    ``ValidationError`` → 422 ``{"detail": [...]}``, ``InvalidRequest`` → 400
    ``{"reason": ...}``, ``BackendUnavailable`` → 503 ``{"reason": ...}``; anything
    else → 500 with the exception as the message. ``engine`` may be any object with
    the engine's feedback methods and a settable ``clock`` (a ClickHouse backend).
    """

    name = "inprocess"

    def __init__(
        self,
        engine: FeedbackService | None = None,
        id_factory: Callable[[], str] | None = None,
        executor: str = "reference",
        unknown_fields: UnknownFields = "reject",
        project_prefix: str = "conformance/p",
    ) -> None:
        self.clock = ManualClock(DEFAULT_INSTANT)
        # An engine passed in may already hold rows (a kept ClickHouse database, an
        # earlier run on the same backend): a prefix of its own keeps projects fresh.
        self._project_prefix = project_prefix
        if engine is None:
            engine = Engine(
                clock=self.clock,
                id_factory=id_factory,
                executor=executor,
                unknown_fields=unknown_fields,
            )
        else:
            engine.clock = self.clock
        self.engine = engine
        self._projects = itertools.count(1)

    def new_project(self) -> str:
        return f"{self._project_prefix}{next(self._projects)}"

    def close(self) -> None:
        """Close the engine if it holds resources (a ClickHouse backend does)."""
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()

    def preflight(self, wait: float) -> None:
        """Nothing to wait for in process."""

    def set_clock(self, instant: str) -> None:
        self.clock.set(instant)

    def _run(self, method: Callable[[dict[str, Any]], BaseModel], request: Any) -> Outcome:
        try:
            result = method(request)
        except ValidationError as exc:
            detail = {"detail": validation_detail(exc)}
            return Outcome(422, detail, error_message(422, detail))
        except InvalidRequest as exc:
            return Outcome(400, {"reason": exc.reason}, exc.reason)
        except BackendUnavailable as exc:  # a backend's database failed: the server's 503
            return Outcome(503, {"reason": exc.reason}, exc.reason)
        except Exception as exc:  # a crash is a result too
            return Outcome(500, None, f"{type(exc).__name__}: {exc}")
        body: JSON = result.model_dump(mode="json")
        return Outcome(200, body, None)

    def feedback_create(self, request: dict[str, Any]) -> Outcome:
        return self._run(self.engine.feedback_create, request)

    def feedback_create_batch(self, request: dict[str, Any]) -> Outcome:
        return self._run(self.engine.feedback_create_batch, request)

    def feedback_aggregate(self, request: dict[str, Any]) -> Outcome:
        return self._run(self.engine.feedback_aggregate, request)

    def feedback_stats(self, request: dict[str, Any]) -> Outcome:
        return self._run(self.engine.feedback_stats, request)

    def _family(self, name: str, request: Any) -> Outcome:
        """The rest of the family, on an engine that may lack it (a backend that
        implements only the four core methods answers 501, as its server does)."""
        method = getattr(self.engine, name, None)
        if method is None:
            reason = format_message(
                errors.ENDPOINT_NOT_SUPPORTED, name=name, backend=type(self.engine).__name__
            )
            return Outcome(501, {"reason": reason}, reason)
        if request is None:
            return self._run(lambda _request: method(), None)
        return self._run(method, request)

    def feedback_query(self, request: dict[str, Any]) -> Outcome:
        return self._family("feedback_query", request)

    def feedback_purge(self, request: dict[str, Any]) -> Outcome:
        return self._family("feedback_purge", request)

    def feedback_replace(self, request: dict[str, Any]) -> Outcome:
        return self._family("feedback_replace", request)

    def feedback_payload_schema(self, request: dict[str, Any]) -> Outcome:
        return self._family("feedback_payload_schema", request)

    def server_info(self) -> Outcome:
        return self._family("server_info", None)


PATHS = {
    "create": "/feedback/create",
    "create_batch": "/feedback/batch/create",
    "aggregate": "/feedback/aggregate",
    "stats": "/feedback/stats",
    "query": "/feedback/query",
    "purge": "/feedback/purge",
    "replace": "/feedback/replace",
    "payload_schema": "/feedback/payload_schema",
    "server_info": "/server_info",
}
CLOCK_PATH = "/refengine/clock"
HEALTH_PATH = "/health"
HEALTH_POLL_SECONDS = 0.1


class HttpTarget:
    """A server speaking the feedback API over HTTP, with Basic credentials.

    ``set_clock`` uses refengine's test control ``POST /refengine/clock {"now": ...}``
    (available when the server runs with a manual clock); another backend can offer
    the same route, or subclass and override :meth:`set_clock`. Pass ``client`` (any
    ``httpx.Client``, e.g. Starlette's ``TestClient(app)``) or ``transport`` to test
    an app without a socket.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        username: str = "api",
        project_prefix: str = "conformance",
        timeout: float = 30.0,
        transport: Any = None,
        client: Any = None,
    ) -> None:
        import httpx  # noqa: PLC0415 (optional: the server extra)

        self.name = base_url
        self.base_url = base_url.rstrip("/")
        auth = (username, api_key) if api_key is not None else None
        if client is None:
            client = httpx.Client(
                base_url=self.base_url, auth=auth, timeout=timeout, transport=transport
            )
        elif auth is not None:
            client.auth = auth
        self._client: httpx.Client = client
        self._project_prefix = project_prefix
        self._run_id = uuid.uuid4().hex[:10]
        self._projects = itertools.count(1)

    def close(self) -> None:
        self._client.close()

    def new_project(self) -> str:
        return f"{self._project_prefix}/{self._run_id}-p{next(self._projects)}"

    def preflight(self, wait: float) -> None:
        """Wait up to ``wait`` seconds until ``GET /health`` gets an answer below 500
        (a backend without that route answers 404: it is up all the same; a 5xx or
        no answer means not yet), then set the clock once, so that a target that is
        down, refuses the credentials or lacks the clock route is reported once
        (:class:`TargetUnavailable`) before any case.

        Runtime complexity: at most ``wait / HEALTH_POLL_SECONDS + 2`` requests.
        """
        import httpx  # noqa: PLC0415 (optional: the server extra)

        deadline = time.monotonic() + wait
        while True:
            try:
                response = self._client.get(HEALTH_PATH)
                problem = f"GET {HEALTH_PATH} answered {response.status_code}"
                if response.status_code < 500:
                    break
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise TargetUnavailable(
                    f"{self.name} is not reachable: not up within {wait:g} s "
                    f"(last: {problem}); is the server running? (--wait sets the limit)"
                )
            time.sleep(HEALTH_POLL_SECONDS)
        self.set_clock(DEFAULT_INSTANT)

    def set_clock(self, instant: str) -> None:
        outcome = self._post(CLOCK_PATH, {"now": instant})
        if outcome.status == 200:
            return
        where = f"{self.name}: POST {CLOCK_PATH} answered {outcome.status}"
        if outcome.status == 0:
            raise TargetUnavailable(f"{self.name} stopped answering ({outcome.message})")
        if outcome.status in (401, 403):
            raise TargetUnavailable(f"{where}: the credentials were refused; check --api-key")
        if outcome.status in (404, 405):
            raise TargetUnavailable(
                f"{where}: the target has no clock route; the cases need one "
                "(refengine serve --clock ISO8601, or the same route on your backend)"
            )
        raise TargetUnavailable(
            f"{where}: cannot set the clock ({outcome.message}); "
            "start the server with a manual clock (refengine serve --clock ISO8601)"
        )

    def _post(self, path: str, request: Any) -> Outcome:
        return self._send("POST", path, request)

    def _get(self, path: str) -> Outcome:
        return self._send("GET", path, None)

    def _send(self, method: str, path: str, request: Any) -> Outcome:
        import httpx  # noqa: PLC0415 (optional: the server extra)

        try:
            if method == "GET":
                response = self._client.get(path)
            else:
                response = self._client.post(path, json=request)
        except httpx.HTTPError as exc:
            return Outcome(
                0, None, f"no response from {method} {path}: {type(exc).__name__}: {exc}"
            )
        try:
            body: JSON = response.json()
        except ValueError:
            text = response.text
            snippet = text if len(text) <= 200 else text[:197] + "..."
            return Outcome(
                response.status_code,
                None,
                f"{method} {path} returned a non-JSON body: {snippet!r}",
            )
        return Outcome(response.status_code, body, error_message(response.status_code, body))

    def feedback_create(self, request: dict[str, Any]) -> Outcome:
        return self._post(PATHS["create"], request)

    def feedback_create_batch(self, request: dict[str, Any]) -> Outcome:
        return self._post(PATHS["create_batch"], request)

    def feedback_aggregate(self, request: dict[str, Any]) -> Outcome:
        return self._post(PATHS["aggregate"], request)

    def feedback_stats(self, request: dict[str, Any]) -> Outcome:
        return self._post(PATHS["stats"], request)

    def feedback_query(self, request: dict[str, Any]) -> Outcome:
        return self._post(PATHS["query"], request)

    def feedback_purge(self, request: dict[str, Any]) -> Outcome:
        return self._post(PATHS["purge"], request)

    def feedback_replace(self, request: dict[str, Any]) -> Outcome:
        return self._post(PATHS["replace"], request)

    def feedback_payload_schema(self, request: dict[str, Any]) -> Outcome:
        return self._post(PATHS["payload_schema"], request)

    def server_info(self) -> Outcome:
        return self._get(PATHS["server_info"])
