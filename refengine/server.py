"""The HTTP server: the feedback endpoints behind their production URLs.

``create_app(engine, api_keys)`` returns a FastAPI application serving

* ``POST /feedback/create``, ``/feedback/batch/create``, ``/feedback/aggregate``,
  ``/feedback/stats``, ``/feedback/query``, ``/feedback/purge``,
  ``/feedback/replace``, ``/feedback/payload_schema`` — the published bodies (one
  table, ``_ENDPOINTS``, makes both their routes and the direct path), and
  ``GET /server_info``; a served backend without one of these methods answers it
  with **501** ``{"reason": "..."}``;
* ``GET /health`` — ``{"status": "ok"}``;
* ``GET /openapi.json`` (and ``/docs``) — the generated OpenAPI document, and its
  Swagger UI page, whose scripts and styles are served from the installed
  ``fastapi-offline`` package (no CDN: ``/docs`` works offline);
* ``GET`` / ``POST /refengine/clock`` — a refengine-only test control, **not part of
  the published API** and left out of the OpenAPI document: read the engine clock,
  or set it (``{"now": "2024-05-01T12:00:00Z"}``) when the engine runs on a
  :class:`~refengine.clock.ManualClock` (otherwise 409).

Errors, as production sends them:

* a body that does not fit the request model, or is not JSON at all → **422** with
  the published ``HTTPValidationError`` body, ``{"detail": [{"loc", "msg", "type"}]}``
  (FastAPI's extra ``input``/``ctx``/``url`` keys are left out: they may hold values
  that are not JSON, and the published ``ValidationError`` has only these three);
* a semantic error (:class:`~refengine.errors.InvalidRequest`) → **400**
  ``{"reason": "..."}``;
* a backend whose database failed (:class:`~refengine.errors.BackendUnavailable`:
  a ClickHouse server down or timing out) → **503** ``{"reason": "..."}``;
* missing or unknown credentials when API keys are configured → **401**
  ``{"detail": "..."}`` with ``WWW-Authenticate: Basic``.

No input makes the server answer 500 (``tests/test_server.py`` fuzzes every route).

Authentication is HTTP Basic as the official client sends it: username ``api``,
password = the API key. With keys configured (``api_keys={"KEY": "user" or None}``)
only those keys are accepted; with none configured every caller is accepted. The
acting user — written as ``wb_user_id`` on every created row, overwriting any value
the client sent — is the key's configured user, else the Basic username unless it
is ``api`` (or empty), else ``"user-"`` + the first 12 hex digits of the key's
SHA-256; a caller with no credentials (only possible without configured keys) acts
as the engine's ``user_id``.

Numbers that JSON cannot hold (a rating sum that overflows to infinity) are written
as ``1e999`` / ``-1e999``, which every JSON parser reads back as ±infinity; NaN is
written as ``null``. Production fails such a response with a server error.

Needs the ``server`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import math
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, NamedTuple, TypeVar

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import errors
from .clock import ManualClock
from .engine import Engine, FeedbackService
from .errors import BackendUnavailable, InvalidRequest, format_message
from .models import (
    FeedbackAggregateReq,
    FeedbackAggregateRes,
    FeedbackCreateBatchReq,
    FeedbackCreateBatchRes,
    FeedbackCreateReq,
    FeedbackCreateRes,
    FeedbackPayloadSchemaReq,
    FeedbackPayloadSchemaRes,
    FeedbackPurgeReq,
    FeedbackPurgeRes,
    FeedbackQueryReq,
    FeedbackQueryRes,
    FeedbackReplaceReq,
    FeedbackReplaceRes,
    FeedbackStatsReq,
    FeedbackStatsRes,
    ServerInfoRes,
    unknown_fields,
)

API_USERNAME = "api"
"""The Basic-auth username the official client sends with an API key."""

FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's, matched
OUT_OF_RANGE = errors.DATE_OUT_OF_RANGE

ResT = TypeVar("ResT", bound=BaseModel)

_VALIDATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "The request fits the model but breaks a rule of the endpoint.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"reason": {"type": "string"}},
                    "required": ["reason"],
                }
            }
        },
    },
    401: {"description": "Missing or unknown API key (only when keys are configured)."},
}


# --- JSON rendering ------------------------------------------------------------------

_NONCE = secrets.token_hex(8)
_POS_INF = f"\x00refengine+inf{_NONCE}\x00"
_NEG_INF = f"\x00refengine-inf{_NONCE}\x00"


def _json_default(value: Any) -> Any:
    # Response models are dumped in Python mode before rendering: datetimes are the
    # only values left that JSON has no type for (any other is a bug, and says so).
    if isinstance(value, datetime):
        return value.isoformat()  # aware UTC datetimes render as "...+00:00"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by a placeholder (or None)."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return None
        return _POS_INF if value > 0 else _NEG_INF
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, BaseModel):
        return _finite(value.model_dump(mode="python"))
    return value


def _dumps(content: Any, ensure_ascii: bool) -> str:
    try:
        return json.dumps(
            content,
            default=_json_default,
            allow_nan=False,
            ensure_ascii=ensure_ascii,
            separators=(",", ":"),
        )
    except ValueError:  # a non-finite float somewhere: rare, and only in query answers
        text = json.dumps(
            _finite(content),
            default=_json_default,
            allow_nan=False,
            ensure_ascii=ensure_ascii,
            separators=(",", ":"),
        )
        return text.replace(json.dumps(_POS_INF), "1e999").replace(json.dumps(_NEG_INF), "-1e999")


def render_json(content: Any) -> bytes:
    """``content`` as UTF-8 JSON bytes; datetimes with an explicit offset.

    Strings holding lone surrogates (legal in JSON text, not in UTF-8) fall back to
    ASCII escapes instead of failing.
    """
    if isinstance(content, BaseModel):
        content = content.model_dump(mode="python")
    try:
        return _dumps(content, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return _dumps(content, ensure_ascii=True).encode("ascii")


class JSONBody(Response):
    """A JSON response rendered by :func:`render_json`."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return render_json(content)


# --- errors --------------------------------------------------------------------------


def _error_item(error: Mapping[str, Any], prefix: Sequence[str | int] = ()) -> dict[str, Any]:
    loc = [part if isinstance(part, (str, int)) else str(part) for part in error.get("loc", ())]
    return {
        "loc": [*prefix, *loc],
        "msg": str(error.get("msg", "")),
        "type": str(error.get("type", "")),
    }


def validation_error_body(
    errors: Sequence[Mapping[str, Any]], prefix: Sequence[str | int] = ()
) -> dict[str, Any]:
    """The published ``HTTPValidationError`` body for a list of pydantic errors."""
    return {"detail": [_error_item(error, prefix) for error in errors]}


def _unprocessable(
    errors: Sequence[Mapping[str, Any]], prefix: Sequence[str | int] = ()
) -> JSONBody:
    return JSONBody(validation_error_body(errors, prefix), status_code=422)


def _json_invalid() -> JSONBody:
    return _unprocessable([{"loc": ("body",), "msg": "JSON decode error", "type": "json_invalid"}])


async def _on_request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _unprocessable(list(exc.errors()))


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
        # Not decodable as JSON (bad UTF-8, nesting deeper than the parser allows):
        # a malformed body, which production answers with 422 like any other.
        return _json_invalid()
    return JSONBody({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _out_of_range() -> JSONBody:
    # A date that fits the model but not the calendar once moved to UTC
    # ("9999-12-31T23:59:59-01:00"): raised while validating the body.
    return _unprocessable([{"loc": ("body",), "msg": OUT_OF_RANGE, "type": "value_error"}])


async def _on_overflow(request: Request, exc: Exception) -> Response:
    return _out_of_range()


def _not_authenticated(detail: str) -> StarletteHTTPException:
    return StarletteHTTPException(
        status_code=401, detail=detail, headers={"WWW-Authenticate": "Basic"}
    )


# --- authentication ------------------------------------------------------------------


def parse_basic(header: str) -> HTTPBasicCredentials | None:
    """The HTTP Basic credentials of an ``Authorization`` header, or ``None`` when it
    holds none that can be read (never an error: the configured keys decide)."""
    scheme, _, param = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(param.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None
    try:
        data = raw.decode("utf-8")
    except UnicodeDecodeError:
        data = raw.decode("latin-1")
    username, separator, password = data.partition(":")
    if not separator:
        return None
    return HTTPBasicCredentials(username=username, password=password)


class _LenientBasic(HTTPBasic):
    """HTTP Basic that never fails by itself: unreadable credentials count as none.

    Whether a request without usable credentials is refused is decided by the
    configured keys, not by the header parser. Declared as the ``HTTPBasic`` security
    scheme in the OpenAPI document, as the published pages do.
    """

    async def __call__(  # type: ignore[override]
        self, request: HTTPConnection
    ) -> HTTPBasicCredentials | None:
        return parse_basic(request.headers.get("Authorization", ""))


def derived_user_id(api_key: str) -> str:
    """The stable user id of an API key that has no configured user."""
    return "user-" + hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def resolve_user(
    credentials: HTTPBasicCredentials | None,
    api_keys: Mapping[str, str | None],
    default_user: str,
) -> str:
    """The acting user of a request, or raise 401 (see the module docstring)."""
    username = credentials.username if credentials is not None else ""
    password = credentials.password if credentials is not None else ""
    if api_keys:
        if not password:
            raise _not_authenticated(errors.NOT_AUTHENTICATED)
        if password not in api_keys:
            raise _not_authenticated(errors.INVALID_API_KEY)
        configured = api_keys[password]
        if configured:
            return configured
    if username and username != API_USERNAME:
        return username
    if password:
        return derived_user_id(password)
    return default_user


# --- the endpoints' work, shared by the FastAPI routes and the direct path ----------


class _Unsupported(Exception):
    """The served object lacks the method of an endpoint: HTTP 501 with this reason."""


def _method(served: FeedbackService, name: str) -> Callable[..., BaseModel]:
    """``served.<name>``, or raise :class:`_Unsupported` (a backend that implements
    only part of the family answers 501 for the rest)."""
    method: Callable[..., BaseModel] | None = getattr(served, name, None)
    if method is None:
        message = errors.ENDPOINT_NOT_SUPPORTED
        raise _Unsupported(format_message(message, name=name, backend=type(served).__name__))
    return method


def _create(served: FeedbackService, req: FeedbackCreateReq, user: str) -> BaseModel:
    return served.feedback_create(req.model_copy(update={"wb_user_id": user}))


def _create_batch(served: FeedbackService, req: FeedbackCreateBatchReq, user: str) -> BaseModel:
    request = FeedbackCreateBatchReq(
        batch=[item.model_copy(update={"wb_user_id": user}) for item in req.batch]
    )
    return served.feedback_create_batch(request)


def _replace(served: FeedbackService, req: FeedbackReplaceReq, user: str) -> BaseModel:
    return _method(served, "feedback_replace")(req.model_copy(update={"wb_user_id": user}))


def _server_info(served: FeedbackService) -> BaseModel:
    return _method(served, "server_info")()


def _calling(name: str) -> Callable[[FeedbackService, Any, str], BaseModel]:
    """The work of an endpoint that passes its request to ``served.<name>`` as is."""

    def run(served: FeedbackService, req: Any, user: str) -> BaseModel:
        return _method(served, name)(req)

    return run


class _Endpoint(NamedTuple):
    """A ``POST`` feedback endpoint: its route in the OpenAPI document and its work."""

    path: str
    summary: str
    description: str
    model: type[BaseModel]
    response: type[BaseModel]
    run: Callable[[FeedbackService, Any, str], BaseModel]
    inline: bool = False
    """Run on the event loop: short whatever the request (one create: its payload is
    at most 1 MiB, and the engine lock is held only to store one row), so a thread
    hop would cost more than it spares the other requests. The others can take
    long, and run in the thread pool so they hold up no other request."""

    @property
    def operation_id(self) -> str:
        """FastAPI's generated id, as production's OpenAPI document has it."""
        name = self.path.strip("/").replace("/", "_")
        return f"{name}_{name}_post"


_ENDPOINT_LIST = (
    _Endpoint("/feedback/create", "Feedback Create", "Add feedback to a call or object.",
              FeedbackCreateReq, FeedbackCreateRes, _create, inline=True),
    _Endpoint("/feedback/batch/create", "Feedback Batch Create",
              "Add several feedback rows: every item is written, or none.",
              FeedbackCreateBatchReq, FeedbackCreateBatchRes, _create_batch),
    _Endpoint("/feedback/aggregate", "Feedback Aggregate",
              "Aggregate typed scorer feedback (tags, ratings) over time buckets.",
              FeedbackAggregateReq, FeedbackAggregateRes, _calling("feedback_aggregate")),
    _Endpoint("/feedback/stats", "Feedback Stats",
              "Return aggregated feedback statistics over time buckets.",
              FeedbackStatsReq, FeedbackStatsRes, _calling("feedback_stats")),
    _Endpoint("/feedback/query", "Feedback Query",
              "Query feedback: filter, sort, page and project the rows of a project.",
              FeedbackQueryReq, FeedbackQueryRes, _calling("feedback_query")),
    _Endpoint("/feedback/purge", "Feedback Purge", "Permanently delete feedback by id.",
              FeedbackPurgeReq, FeedbackPurgeRes, _calling("feedback_purge")),
    _Endpoint("/feedback/replace", "Feedback Replace",
              "Replace a feedback row by a new one (validated in full before removing).",
              FeedbackReplaceReq, FeedbackReplaceRes, _replace),
    _Endpoint("/feedback/payload_schema", "Feedback Payload Schema",
              "The json_paths of a project's payloads and their value types.",
              FeedbackPayloadSchemaReq, FeedbackPayloadSchemaRes,
              _calling("feedback_payload_schema")),
)  # fmt: skip
_ENDPOINTS: dict[str, _Endpoint] = {endpoint.path: endpoint for endpoint in _ENDPOINT_LIST}
"""The feedback endpoints by path: FastAPI's routes and the direct path both come
from this table, so they cannot disagree."""

_HEALTH = render_json({"status": "ok"})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with ``body`` (already read from it) delivered again first."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _json_content_type(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value == b"application/json")
    return False


class _Gate:
    """ASGI middleware in front of every route: credentials first, then the body.

    With API keys configured, a request to a guarded route (everything but
    ``/health`` and the OpenAPI document) without an accepted key is answered 401
    before the application runs, so its body is never read or parsed. Every request
    is then validated under the engine's ``unknown_fields`` mode (a context variable:
    FastAPI validates the body models itself).

    The direct path: ``GET /health``, and a ``POST`` to a feedback endpoint whose
    body is ``application/json`` that the request model accepts, are answered here,
    without FastAPI's routing and dependency resolution (half or more of the
    server's own time per request), with the very bytes the routes send: the same
    model validation, the same engine call and user, the same rendering and error
    mapping. Anything else — no or another content type, a query string, a body
    that is not JSON or that the model refuses — goes to FastAPI with its body
    replayed, so every error response stays FastAPI's own.
    """

    def __init__(self, app: ASGIApp, engine: FeedbackService, api_keys: Mapping[str, str | None]):
        self.app = app
        self.engine = engine
        self.api_keys = api_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if self.api_keys and path not in OPEN_PATHS and not path.startswith(DOCS_ASSETS + "/"):
            header = Headers(scope=scope).get("authorization", "")
            try:
                resolve_user(parse_basic(header), self.api_keys, self.engine.user_id)
            except StarletteHTTPException as exc:
                response = JSONBody(
                    {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
                )
                await response(scope, receive, send)
                return
        with unknown_fields(self.engine.unknown_fields):
            method, query = scope.get("method"), scope.get("query_string")
            if method == "GET" and path == "/health" and not query:
                health = Response(_HEALTH, media_type="application/json")
                await health(scope, receive, send)
                return
            endpoint = _ENDPOINTS.get(path) if method == "POST" and not query else None
            if endpoint is None or not _json_content_type(scope):
                await self.app(scope, receive, send)
                return
            body = await _read_body(receive)
            answer = await self._direct(endpoint, scope, body)
            if answer is None:
                await self.app(scope, _replay(body, receive), send)
            else:
                await answer(scope, receive, send)

    async def _direct(self, endpoint: _Endpoint, scope: Scope, body: bytes) -> Response | None:
        """The response to a feedback request the model accepts, or None to let
        FastAPI answer (and word the error)."""
        try:
            req = endpoint.model.model_validate(json.loads(body))
        except Exception:  # not JSON, too deep, not the model: FastAPI's 422
            return None
        header = Headers(scope=scope).get("authorization", "")
        user = resolve_user(parse_basic(header), self.api_keys, self.engine.user_id)
        engine = self.engine

        def answer() -> JSONBody:
            try:
                return _call_engine(lambda: endpoint.run(engine, req, user))
            except OverflowError:  # as the app's OverflowError handler answers it
                return _out_of_range()

        if endpoint.inline:
            return answer()
        return await run_in_threadpool(answer)


OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
"""Routes that need no credentials (with the Swagger UI assets under
:data:`DOCS_ASSETS`); every other path is checked before its body."""

DOCS_ASSETS = "/docs/assets"
"""Where ``/docs`` loads the Swagger UI from: files of the installed
``fastapi-offline`` package, so the page works without network access."""


# --- the application -----------------------------------------------------------------


def _call_engine(action: Callable[[], ResT]) -> JSONBody:
    """Run an engine call and map its failures to the published error responses."""
    try:
        result = action()
    except InvalidRequest as exc:
        return JSONBody({"reason": exc.reason}, status_code=400)
    except BackendUnavailable as exc:
        return JSONBody({"reason": exc.reason}, status_code=503)
    except _Unsupported as exc:
        return JSONBody({"reason": str(exc)}, status_code=501)
    except ValidationError as exc:
        # Validation inside the engine (the stats request re-validated once a missing
        # end has become "now") is a request-model error like any other.
        return _unprocessable(list(exc.errors()), prefix=("body",))
    return JSONBody(result)


class ClockSet(BaseModel):
    """Body of ``POST /refengine/clock``."""

    now: datetime


_basic = _LenientBasic(auto_error=False, scheme_name="HTTPBasic")


async def current_user(
    request: Request,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> str:
    """FastAPI dependency: the acting user of ``request`` (or 401). Asynchronous
    because it never blocks: FastAPI would run a plain function in its thread pool,
    a thread hop per request."""
    served: FeedbackService = request.app.state.engine
    keys: dict[str, str | None] = request.app.state.api_keys
    return resolve_user(credentials, keys, served.user_id)


User = Annotated[str, Depends(current_user)]


def _route(served: FeedbackService, endpoint: _Endpoint) -> Callable[..., Any]:
    """The FastAPI route function of ``endpoint``: its body parsed as the request
    model, the user from the credentials; a coroutine when the endpoint runs inline."""

    if endpoint.inline:

        async def inline(req: BaseModel, user: str) -> Response:
            return _call_engine(lambda: endpoint.run(served, req, user))

        route: Callable[..., Any] = inline
    else:

        def pooled(req: BaseModel, user: str) -> Response:
            return _call_engine(lambda: endpoint.run(served, req, user))

        route = pooled
    # FastAPI reads the body's model and the dependency from the annotations.
    route.__annotations__ = {"req": endpoint.model, "user": User, "return": Response}
    route.__name__ = endpoint.operation_id.removesuffix("_post")
    return route


def create_app(
    engine: FeedbackService | None = None, api_keys: Mapping[str, str | None] | None = None
) -> FastAPI:
    """A FastAPI app serving ``engine`` (a new one on the system clock by default).

    ``api_keys`` maps each accepted API key to its user id (or ``None`` to derive
    one); empty or ``None`` accepts every caller. ``engine`` may be any object with
    the engine's four feedback methods and its ``clock``, ``user_id`` and
    ``unknown_fields`` attributes, e.g. a
    :class:`refengine.backends.clickhouse.ClickHouseBackend`.
    """
    served = engine if engine is not None else Engine()
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        redoc_url=None,
        title="refengine",
        version="0.1.0",
        description="In-memory reference engine for the trace server feedback endpoints.",
        exception_handlers={
            RequestValidationError: _on_request_validation,
            StarletteHTTPException: _on_http_exception,
            OverflowError: _on_overflow,
        },
    )
    app.state.engine = served
    app.state.api_keys = dict(api_keys or {})
    app.add_middleware(_Gate, engine=served, api_keys=app.state.api_keys)

    for endpoint in _ENDPOINT_LIST:
        app.add_api_route(
            endpoint.path,
            _route(served, endpoint),
            methods=["POST"],
            tags=["Feedback"],
            summary=endpoint.summary,
            description=endpoint.description,
            response_model=endpoint.response,
            responses=_VALIDATION_RESPONSES,
            operation_id=endpoint.operation_id,
        )

    @app.get(
        "/server_info",
        tags=["Service"],
        summary="Server Info",
        response_model=ServerInfoRes,
        operation_id="server_info_server_info_get",
    )
    def server_info(user: User) -> Response:
        """The minimum client version and this server's version."""
        return _call_engine(lambda: _server_info(served))

    @app.get("/health", tags=["Service"], summary="Health")
    async def health() -> dict[str, str]:
        """Liveness check: ``{"status": "ok"}``."""
        return {"status": "ok"}

    @app.get("/refengine/clock", include_in_schema=False)
    def get_clock(user: User) -> Response:
        """refengine test control: the engine clock's now, and whether it is manual."""
        return JSONBody({"now": served.clock(), "manual": isinstance(served.clock, ManualClock)})

    @app.post("/refengine/clock", include_in_schema=False)
    def set_clock(body: ClockSet, user: User) -> Response:
        """refengine test control: set a manual engine clock (409 on a system clock)."""
        clock = served.clock
        if not isinstance(clock, ManualClock):
            return JSONBody(
                {"reason": errors.CLOCK_NOT_MANUAL},
                status_code=409,
            )
        try:
            now = clock.set(body.now)
        except OverflowError:
            return _unprocessable(
                [{"loc": ("body", "now"), "msg": OUT_OF_RANGE, "type": "value_error"}]
            )
        return JSONBody({"now": now, "manual": True})

    return app


# --- running in the background (pytest plugin, tests) --------------------------------


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle's algorithm on a listening socket (accepted sockets inherit it).

    uvicorn's h11 protocol writes a response in several small sends; with Nagle on,
    a keep-alive client's delayed ACK then stalls every request by ~40 ms.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0 = any free port) and listening.

    Connections queue from the moment this returns, before uvicorn serves them, so
    a client started right after it is not refused. IPv6 when ``host`` has a colon;
    Nagle off (:func:`set_nodelay`). Raises ``OSError`` (or ``OverflowError`` for a
    port above 65535) when the address cannot be had.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        set_nodelay(sock)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class BackgroundServer:
    """uvicorn serving ``app`` on a free 127.0.0.1 port, in a daemon thread.

    >>> server = BackgroundServer(create_app())  # doctest: +SKIP
    >>> server.start(); server.base_url; server.stop()  # doctest: +SKIP
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._socket = listening_socket(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"refengine-server-{self.port}",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Start serving; returns once uvicorn accepts connections (or raises)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"refengine server on {self.base_url} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for the thread (bounded)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
