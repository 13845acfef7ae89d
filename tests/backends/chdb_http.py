"""A ClickHouse HTTP interface for tests, answered by chdb: what ``clickhouse-connect``
sends to a server, taken as a server takes it.

Run as a program (``python chdb_http.py --path DIR``), it listens on 127.0.0.1 (a free
port unless ``--port``), prints ``listening on PORT`` and serves until killed, with
its own embedded ClickHouse: chdb holds one per process, so the tests' own chdb
fixture is not disturbed. The test process imports nothing from here.

What it models of the real server's HTTP interface (``HTTPHandler``):

* the statement: the ``query`` URL argument, a newline, then the request body; or,
  for a ``multipart/form-data`` body, the ``query`` form field (the body is the form);
* ``param_<name>`` arguments (URL or form), passed as they arrived — in ClickHouse's
  escaped text form — as the statement's bound parameters;
* ``database`` (the current database), ``default_format`` (TabSeparated otherwise;
  a ``FORMAT`` clause wins), every other argument a setting for this statement only;
* ``--setting NAME=VALUE``: a default of every statement, as a server profile's;
* credentials by ``X-ClickHouse-User``/``X-ClickHouse-Key``, HTTP Basic or the
  ``user``/``password`` arguments, one way only (``--user``/``--password``; 516
  otherwise), as ``authenticateUserByHTTP`` takes them;
* the limits a default server enforces on a request: at most 1 MiB of URI
  (``http_max_uri_size``) and 128 KiB per URL argument or form field
  (``http_max_field_value_size``);
* the answer: 200 with ``X-ClickHouse-Query-Id``, ``-Format``, ``-Timezone`` and
  ``-Summary``; a failure as ClickHouse's text (``Code: N. DB::Exception: ...``) with
  ``X-ClickHouse-Exception-Code`` and the status ``exceptionCodeToHTTPStatus`` gives it;
  ``GET /ping`` answers ``Ok.``. Responses are never compressed (a client asking
  for compression accepts an identity body); a compressed request is refused.

Not modeled: sessions (each request stands alone), external data, progress headers.

Faults for tests, by ``POST /__shim__/fault`` with a body of ``garbage`` (200 with
bytes that are no format), ``error500`` (a proxy's HTML 500, no ClickHouse
headers), ``hang:SECONDS`` (answer that much later), ``close`` (drop the
connection unanswered) or nothing (back to normal); ``/ping`` is never faulted.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_URI = 1024 * 1024
MAX_FIELD = 128 * 1024

# Arguments the HTTP handler reads itself; every other one is a setting.
NOT_SETTINGS = {
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "session_id", "session_timeout", "session_check", "compress", "decompress",
    "buffer_size", "wait_end_of_query", "client_protocol_version", "role", "stacktrace",
}  # fmt: skip

# ClickHouse's exceptionCodeToHTTPStatus (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp),
# by the error's name as its text ends "(NAME)"; any other error is a 500.
_STATUS_NAMES = {
    401: "REQUIRED_PASSWORD",
    403: "UNKNOWN_USER WRONG_PASSWORD AUTHENTICATION_FAILED SET_NON_GRANTED_ROLE ACCESS_DENIED",
    400: "BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE "
    "CANNOT_PARSE_QUOTED_STRING CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER "
    "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING CANNOT_PARSE_IPV4 CANNOT_PARSE_IPV6 "
    "CANNOT_PARSE_INPUT_ASSERTION_FAILED CANNOT_PARSE_UUID DUPLICATE_COLUMN ILLEGAL_COLUMN "
    "UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE THERE_IS_NO_COLUMN TOO_DEEP_AST TOO_BIG_AST "
    "UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH "
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    404: "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
    "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING UNKNOWN_AGGREGATE_FUNCTION "
    "UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE",
    413: "QUERY_IS_TOO_LARGE",
    501: "NOT_IMPLEMENTED",
    503: "SOCKET_TIMEOUT CANNOT_OPEN_FILE CANNOT_SCHEDULE_TASK",
    411: "HTTP_LENGTH_REQUIRED",
    408: "TIMEOUT_EXCEEDED",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
STATUS_OF_NAME = {name: status for status, names in _STATUS_NAMES.items() for name in names.split()}


def http_status(text: str) -> int:
    found = re.search(r"\(([A-Z0-9_]+)\)\s*$", text)
    return STATUS_OF_NAME.get(found.group(1), 500) if found else 500


class Failure(Exception):
    """A ClickHouse exception to answer with: its code and its text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class ChdbServer:
    """The embedded ClickHouse behind the interface; statements run one at a time."""

    def __init__(
        self, path: str, user: str, password: str, databases: list[str], profile: list[str]
    ) -> None:
        from chdb import session  # the clickhouse extra, needed only in this process

        self.session: Any = session.Session(path)
        self.lock = threading.Lock()
        self.user, self.password = user, password
        self.fault = ""
        self.database = ""  # the session's current database and settings (see run)
        self.settings: dict[str, str] = {}
        self.version = self._one("SELECT version()")
        self.timezone = self._one("SELECT timezone()")
        for name in databases:
            self.session.query(f"CREATE DATABASE IF NOT EXISTS {quote_name(name)}")
        for setting in profile:  # the server's defaults, as a users.xml profile sets them
            name, _, value = setting.partition("=")
            self.session.query(f"SET {name} = {quote_string(value)}")

    def _one(self, statement: str) -> str:
        return str(self.session.query(statement, "TabSeparated").bytes().decode().strip())

    def run(
        self, statement: str, params: dict[str, str], database: str, settings: dict[str, str],
        default_format: str,
    ) -> bytes:  # fmt: skip
        """The answer's bytes, or raise :class:`Failure`.

        The statement runs with the server's defaults plus ``settings``, in
        ``database``. Both are session state in chdb, changed only where this request
        differs from the last one: a client sends the same settings every time, and
        two statements more per setting and request would triple the time a test takes.
        """
        with self.lock:
            if database != self.database:
                self._query(f"USE {quote_name(database)}")
                self.database = database
            for name in [n for n in self.settings if n not in settings]:
                self._query(f"SET {name} = DEFAULT")
                del self.settings[name]
            for name, value in settings.items():
                if self.settings.get(name) == value:
                    continue
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise Failure(115, f"Code: 115. DB::Exception: Unknown setting '{name}'. "
                                       "(UNKNOWN_SETTING)")  # fmt: skip
                self.settings.pop(name, None)  # unknown until the SET succeeds
                self._query(f"SET {name} = {quote_string(value)}")
                self.settings[name] = value
            return self._query(statement, default_format, params)

    def _query(self, statement: str, fmt: str = "TabSeparated", params: Any = None) -> bytes:
        try:
            result = self.session.query(statement, fmt, params=params or {})
        except Exception as exc:  # chdb's own error classes carry ClickHouse's text
            text = str(exc).strip()
            found = re.match(r"Code: (\d+)\.", text)
            raise Failure(int(found.group(1)) if found else 1001, text) from None
        return bytes(result.bytes())


def quote_name(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def multipart_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The fields of a ``multipart/form-data`` body, each value exactly its bytes."""
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    if not found:
        raise Failure(1000, "Code: 1000. DB::Exception: multipart without a boundary")
    delimiter = b"--" + found.group(1).encode()
    fields: dict[str, str] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        value = value.removesuffix(b"\r\n")
        disposition = re.search(rb'name="([^"]*)"', head)
        if disposition is None or b"filename=" in head:
            raise Failure(1000, "Code: 1000. DB::Exception: external data is not modeled")
        fields[disposition.group(1).decode()] = check_field(value).decode()
    return fields


def check_field(value: bytes) -> bytes:
    if len(value) > MAX_FIELD:
        raise Failure(
            1000, "Code: 1000. DB::Exception: HTML Form Exception: Field value too long. "
            "(POCO_EXCEPTION)"
        )  # fmt: skip
    return value


class Handler(BaseHTTPRequestHandler):
    server: Any  # the ThreadingHTTPServer, with .chdb set

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm holds
        # the body until the client's delayed ACK, some 40 ms on every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read answers, not a log

    def do_GET(self) -> None:
        self.handle_request()

    def do_POST(self) -> None:
        self.handle_request()

    def handle_request(self) -> None:
        chdb: ChdbServer = self.server.chdb
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        if url.path == "/ping":
            self.answer(200, b"Ok.\n", {})
            return
        if url.path == "/__shim__/fault":
            chdb.fault = body.decode()
            self.answer(200, b"", {})
            return
        fault = chdb.fault
        if fault == "close":
            self.close_connection = True
            self.connection.close()
            return
        if fault.startswith("hang:"):
            time.sleep(float(fault.split(":", 1)[1]))
        if fault == "error500":
            self.answer(500, b"<html><body>502 Bad Gateway</body></html>",
                        {"Content-Type": "text/html"})  # fmt: skip
            return
        if fault == "garbage":
            self.answer(200, b"\x00\xffnot a ClickHouse format\x17", {})
            return
        try:
            try:
                self.answer(200, *self.execute(chdb, url.query, body))
            except UnicodeDecodeError as exc:
                raise Failure(1001, f"Code: 1001. DB::Exception: not UTF-8: {exc}") from None
        except Failure as failure:
            text = f"{failure.text} (version {chdb.version})\n".encode()
            status = http_status(failure.text)
            self.answer(status, text, {"X-ClickHouse-Exception-Code": str(failure.code)})

    def execute(self, chdb: ChdbServer, query: str, body: bytes) -> tuple[bytes, dict[str, str]]:
        if len(self.path) > MAX_URI:
            raise Failure(1000, "Code: 1000. DB::Exception: URI too long. (POCO_EXCEPTION)")
        args: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True, errors="strict"):
            check_field(value.encode())
            args[name] = value
        if self.headers.get("Content-Encoding"):
            raise Failure(1000, "Code: 1000. DB::Exception: compressed requests are not modeled")
        content_type = self.headers.get("Content-Type") or ""
        if content_type.startswith("multipart/form-data"):
            args.update(multipart_fields(body, content_type))
            statement = args.get("query", "")
        else:
            statement = args.get("query", "")
            statement = (statement + "\n" if statement else "") + body.decode()
        self.authenticate(chdb, args)
        params = {k[len("param_") :]: v for k, v in args.items() if k.startswith("param_")}
        settings = {
            k: v for k, v in args.items() if k not in NOT_SETTINGS and not k.startswith("param_")
        }
        default_format = args.get("default_format") or "TabSeparated"
        out = chdb.run(statement, params, args.get("database") or "default", settings,
                       default_format)  # fmt: skip
        named = re.search(r"\bFORMAT\s+(\w+)\s*;?\s*$", statement, re.IGNORECASE)
        headers = {
            "X-ClickHouse-Query-Id": args.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Timezone": chdb.timezone,
            "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0"}),
            "Content-Type": "text/plain; charset=UTF-8",
        }
        if not statement.lstrip().upper().startswith(("INSERT", "CREATE", "SET", "USE")):
            headers["X-ClickHouse-Format"] = named.group(1) if named else default_format
        return out, headers

    def authenticate(self, chdb: ChdbServer, args: dict[str, str]) -> None:
        """As authenticateUserByHTTP: the X-ClickHouse headers, or HTTP Basic, or the
        ``user``/``password`` arguments (``default``), and never two of them at once."""
        user = self.headers.get("X-ClickHouse-User", "")
        password = self.headers.get("X-ClickHouse-Key", "")
        authorization = self.headers.get("Authorization")
        in_args = "user" in args or "password" in args
        ways = [bool(user or password), authorization is not None, in_args]
        if sum(ways) > 1:
            raise Failure(516, "Code: 516. DB::Exception: Invalid authentication: it is not "
                               "allowed to use two authentication methods simultaneously. "
                               "(AUTHENTICATION_FAILED)")  # fmt: skip
        if authorization is not None:
            scheme, _, encoded = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise Failure(516, f"Code: 516. DB::Exception: Invalid authentication: "
                                   f"'{scheme}' HTTP Authorization scheme is not supported. "
                                   "(AUTHENTICATION_FAILED)")  # fmt: skip
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        elif not ways[0]:
            user, password = args.get("user", "default"), args.get("password", "")
        if (user, password) != (chdb.user, chdb.password):
            raise Failure(
                516, f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)"
            )  # fmt: skip

    def answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a timeout test)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True, help="chdb's database directory")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default="")
    parser.add_argument("--database", action="append", default=[], help="create this database")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE",
        help="a default of every statement (a server profile's setting)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.chdb = ChdbServer(  # type: ignore[attr-defined]
        args.path, args.user, args.password, args.database, args.setting
    )
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
