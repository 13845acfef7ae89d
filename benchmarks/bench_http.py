"""refengine's HTTP overhead next to a bare ASGI app on the same uvicorn — prints
figures, asserts nothing about time.

    python benchmarks/bench_http.py                 # 3,000 rounds
    python benchmarks/bench_http.py --rounds 500

Issue 15, goal 6. Two servers run side by side, each in its own process on the
same uvicorn settings (h11, no access log, Nagle off): refengine's app
(:func:`refengine.server.create_app`, an engine holding 1,000 scorer rows), and a
bare ASGI app that reads the request body and answers it with
the same engine work done without a framework (:func:`bare_app`; every answer
is checked byte for byte against refengine's, ids aside), so the two differ only
by refengine's server overhead: FastAPI's routing, validation and dependencies,
the thread hop of a synchronous route, the middleware. One client process holds a persistent
(keep-alive) connection to each and interleaves the requests: per round, for each
of ``GET /health``, a create, and a small aggregate (one day hourly, 1,000 rows),
one request to each server, in alternating order. The figures are each server's
median round trip per request kind and their ratio, next to the goals (≤ 1.2×,
1.3×, 1.3×).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import uvicorn

from refengine import Engine, ManualClock
from refengine.server import create_app, listening_socket, render_json
from refengine.synthetic import synthetic_rows

PROJECT = "bench/http"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
START_MS = int(START.timestamp() * 1000)
GOALS = {"health": 1.2, "create": 1.3, "aggregate": 1.3}

CREATE = {
    "project_id": PROJECT,
    "weave_ref": f"weave:///{PROJECT}/call/c1",
    "feedback_type": "custom",
    "payload": {"score": 0.5, "note": "fine"},
}
AGGREGATE = {
    "project_id": PROJECT,
    "after_ms": START_MS,
    "before_ms": START_MS + 86_400_000,
    "time_bucket_seconds": 3600,
    "group_by": ["scorer_id"],
}
REQUESTS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "health": ("GET", "/health", None),
    "create": ("POST", "/feedback/create", CREATE),
    "aggregate": ("POST", "/feedback/aggregate", AGGREGATE),
}


def refengine_app() -> Any:
    engine = Engine(clock=ManualClock(START + timedelta(days=1)))
    engine.insert_rows(synthetic_rows(PROJECT, 1000, START, timedelta(days=1), seed=1))
    return create_app(engine)


def bare_app() -> Any:
    """The least an ASGI app must do to answer the same requests: read the body,
    ``json.loads`` it, call the same engine (same rows) with the dict, and write
    the answer with ``json.dumps`` — no framework, no validation of its own, no
    thread hop, no authentication."""
    engine = refengine_app().state.engine
    methods = {
        "/feedback/create": engine.feedback_create,
        "/feedback/aggregate": engine.feedback_aggregate,
    }
    health = b'{"status":"ok"}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        path = scope["path"]
        body = (
            health
            if path == "/health"
            else render_json(methods[path](json.loads(b"".join(chunks))))
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def serve(kind: str, port: int) -> None:
    app = refengine_app() if kind == "refengine" else bare_app()
    sock = listening_socket("127.0.0.1", port)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, http="h11")
    uvicorn.Server(config).run(sockets=[sock])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(kind: str, port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    process = subprocess.Popen(args)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the {kind} server did not start")


def call(conn: http.client.HTTPConnection, kind: str) -> tuple[int, bytes]:
    method, path, body = REQUESTS[kind]
    data = None if body is None else json.dumps(body).encode()
    headers = {} if data is None else {"Content-Type": "application/json"}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def _without_id(body: bytes) -> bytes:
    answer = json.loads(body)
    answer.pop("id")
    return json.dumps(answer).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--serve", choices=["refengine", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    ref_port, bare_port = free_port(), free_port()
    ref = start("refengine", ref_port)
    bare: subprocess.Popen[bytes] | None = None
    try:
        bare = start("bare", bare_port)
        ref_conn = http.client.HTTPConnection("127.0.0.1", ref_port)
        bare_conn = http.client.HTTPConnection("127.0.0.1", bare_port)
        for kind in REQUESTS:
            mine, theirs = call(ref_conn, kind), call(bare_conn, kind)
            if kind == "create":  # ids differ: compare the rest
                mine = (mine[0], _without_id(mine[1]))
                theirs = (theirs[0], _without_id(theirs[1]))
            if mine != theirs:
                raise SystemExit(f"the bare app's {kind} answer differs from refengine's")
        times: dict[str, dict[str, list[float]]] = {
            "refengine": {k: [] for k in REQUESTS},
            "bare": {k: [] for k in REQUESTS},
        }
        targets = [("refengine", ref_conn), ("bare", bare_conn)]
        for warm in (True, False):
            for i in range(200 if warm else args.rounds):
                for kind in REQUESTS:
                    for name, conn in targets if i % 2 else reversed(targets):
                        t0 = time.perf_counter()
                        status, _ = call(conn, kind)
                        elapsed = time.perf_counter() - t0
                        if status != 200:
                            raise SystemExit(f"{name} {kind}: HTTP {status}")
                        if not warm:
                            times[name][kind].append(elapsed)
    finally:
        for process in (ref, bare):
            if process is not None:
                process.terminate()
                process.wait(10)

    print(f"Python {sys.version.split()[0]}; {args.rounds:,} interleaved rounds, keep-alive")
    print(f"{'request':10} {'refengine':>12} {'bare ASGI':>12} {'ratio':>7} {'goal':>6}")
    for kind in REQUESTS:
        r = statistics.median(times["refengine"][kind]) * 1e6
        b = statistics.median(times["bare"][kind]) * 1e6
        verdict = "met" if r / b <= GOALS[kind] else "NOT met"
        print(f"{kind:10} {r:9.0f} µs {b:9.0f} µs {r / b:6.2f}× {GOALS[kind]:5.1f}×  {verdict}")


if __name__ == "__main__":
    main()
