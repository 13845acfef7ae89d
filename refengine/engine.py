"""The :class:`Engine` façade: the trace server's feedback methods, in process.

Each method takes the request model or a plain dict and returns the response model.
A dict that does not fit the model raises pydantic ``ValidationError``; a semantic
failure raises :class:`refengine.errors.InvalidRequest`. Writes are all-or-nothing.

Thread safety: one lock guards every write and every window snapshot (for
aggregate, a copy of the index columns in the window; for stats, the rows and their
metric columns); folding a snapshot happens outside the lock, so queries never
block one another for long and always see a consistent set of rows.
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from . import aggregate, dumpfile, stats
from .clock import Clock, SystemClock
from .create import IdFactory, PreparedCreate, RowIdSource, prepare_row, uuid7
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
)
from .paths import PathReader
from .rows import FeedbackRow
from .semantics import feedback_query, payload_schema, purge, replace, server_info
from .store import ProjectStore

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")


def coerce_request(model: type[ModelT], req: ModelT | Mapping[str, Any]) -> ModelT:
    """``req`` as a validated ``model``: instances pass through, anything else is
    validated (a dict that does not fit raises pydantic ``ValidationError``)."""
    if isinstance(req, model):
        return req
    return model.model_validate(req)


def _drain(items: list[T]) -> Iterator[T]:
    """Yield the items of ``items`` in order, removing each from the list as it goes."""
    items.reverse()
    while items:
        yield items.pop()


class Engine:
    """An in-memory trace server for the feedback endpoints.

    ``clock`` stamps each row's ``created_at`` (default: the system clock);
    ``user_id`` is the ``wb_user_id`` of requests without one; ``id_factory`` gives
    the ids of rows created without one (default: a UUIDv7 stamped with the row's
    ``created_at``).

    >>> from refengine import Engine, ManualClock
    >>> engine = Engine(clock=ManualClock("2024-05-01T12:00:00Z"))
    >>> res = engine.feedback_create({
    ...     "project_id": "acme/bot", "weave_ref": "weave:///acme/bot/call/c1",
    ...     "feedback_type": "custom", "payload": {"score": 0.5}})
    >>> res.created_at.isoformat(), res.wb_user_id
    ('2024-05-01T12:00:00+00:00', 'refengine')
    >>> len(engine.rows("acme/bot"))
    1
    """

    def __init__(
        self,
        clock: Clock | None = None,
        user_id: str = "refengine",
        id_factory: IdFactory | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.user_id = user_id
        # None: each row gets a UUIDv7 stamped with its own created_at (engine clock).
        self._id_factory = id_factory
        # Ids from id_factory that a rejected batch drew for its earlier items, given
        # out again first: a failed batch leaves a deterministic sequence as it was.
        self._unused_ids: deque[str] = deque()
        self._projects: dict[str, ProjectStore] = {}
        self._lock = threading.RLock()

    # --- create ----------------------------------------------------------------------

    def feedback_create(self, req: FeedbackCreateReq | Mapping[str, Any]) -> FeedbackCreateRes:
        """Validate and store one feedback row; see spec/SEMANTICS.md, "Create"."""
        request = coerce_request(FeedbackCreateReq, req)
        prepared = self._prepare(request, self._next_id)
        self._store([prepared.row])
        return prepared.response

    def feedback_create_batch(
        self, req: FeedbackCreateBatchReq | Mapping[str, Any]
    ) -> FeedbackCreateBatchRes:
        """Validate every item, then store all of them; any failure stores none (and
        the ``id_factory`` ids drawn for the items before it go to the next rows)."""
        request = coerce_request(FeedbackCreateBatchReq, req)
        items: Iterable[FeedbackCreateReq] = request.batch
        if request is not req:
            # The validated batch is ours alone: let each item model go once it is
            # prepared. Held to the end, every batch's models would survive two young
            # collections and reach the oldest generation, whose growth triggers full
            # collections over every stored row.
            items = _drain(request.batch)
        drawn: list[str] = []

        def drawing(created_at_ms: int) -> str:
            ident = self._next_id(created_at_ms)
            drawn.append(ident)
            return ident

        # Only a caller's ids are given back: a UUIDv7 tells its own row's time.
        new_id: RowIdSource = self._next_id if self._id_factory is None else drawing

        rows: list[FeedbackRow] = []
        responses: list[FeedbackCreateRes] = []
        try:
            for item in items:
                row, response = self._prepare(item, new_id)
                rows.append(row)
                responses.append(response)
        except BaseException:
            self._unused_ids.extendleft(reversed(drawn))
            raise
        self._store(rows)
        return FeedbackCreateBatchRes(res=responses)

    def _prepare(self, request: FeedbackCreateReq, new_id: RowIdSource) -> PreparedCreate:
        return prepare_row(request, now=self.clock(), default_user_id=self.user_id, new_id=new_id)

    def _next_id(self, created_at_ms: int) -> str:
        """An id a rejected batch gave back, else a new one: from ``id_factory``, or
        a UUIDv7 whose timestamp is the row's ``created_at_ms``."""
        if self._unused_ids:
            try:
                return self._unused_ids.popleft()
            except IndexError:  # another thread took the last one
                pass
        factory = self._id_factory
        return uuid7(created_at_ms) if factory is None else factory()

    # --- queries ---------------------------------------------------------------------

    def feedback_aggregate(
        self, req: FeedbackAggregateReq | Mapping[str, Any]
    ) -> FeedbackAggregateRes:
        """Counts and rating sums per (time bucket, group); see spec/SEMANTICS.md."""
        request = coerce_request(FeedbackAggregateReq, req)
        dims = aggregate.partition_dims(request)
        with self._lock:
            store = self._store_to_read(request.project_id)
            views = store.aggregate_views(dims, request.after_ms, request.before_ms)
            index = store.aggregate_index
        return aggregate.feedback_aggregate(request, views, index.profiles, index.signatures)

    def feedback_stats(self, req: FeedbackStatsReq | Mapping[str, Any]) -> FeedbackStatsRes:
        """Payload metrics per time bucket and over the window; see spec/SEMANTICS.md.

        A missing ``end`` is the engine clock's now; the request is then validated
        again so the range checks apply to it as request-model errors.
        """
        request = coerce_request(FeedbackStatsReq, req)
        if request.end is None:
            request = FeedbackStatsReq.model_validate({**request.model_dump(), "end": self.clock()})
        return stats.feedback_stats(request, self._stats_window)

    def insert_rows(self, rows: Iterable[FeedbackRow]) -> None:
        """Store rows that are already built (from a dump, or a bulk generator).

        No create validation runs: use it only for rows made by :func:`make_row` from
        trusted data. O(m log(n + m)) for m rows.
        """
        self._store(rows)

    def _store(self, rows: Iterable[FeedbackRow]) -> None:
        with self._lock:
            for row in rows:
                store = self._projects.get(row.project_id)
                if store is None:
                    store = self._projects[row.project_id] = ProjectStore(row.project_id)
                store.add(row)

    # --- reading ---------------------------------------------------------------------

    def window(
        self, project_id: str, after_ms: int | None = None, before_ms: int | None = None
    ) -> list[FeedbackRow]:
        """A snapshot of one project's rows with ``after_ms <= created_at_ms < before_ms``.

        ``O(log n + k)``; the list is the caller's to keep.
        """
        with self._lock:
            return self._store_to_read(project_id).window(after_ms, before_ms)

    def _stats_window(
        self, project_id: str, after_ms: int, before_ms: int, readers: Sequence[PathReader]
    ) -> tuple[list[FeedbackRow], list[array[float]]]:
        with self._lock:
            return self._store_to_read(project_id).stats_window(after_ms, before_ms, readers)

    def _store_to_read(self, project_id: str) -> ProjectStore:
        store = self._projects.get(project_id)
        # A project without rows reads as an empty store, which is not kept.
        return ProjectStore(project_id) if store is None else store

    def rows(self, project_id: str) -> list[FeedbackRow]:
        """All rows of a project in store order: ``created_at``, then insertion."""
        return self.window(project_id)

    def projects(self) -> list[str]:
        """The ids of the projects that have rows, sorted."""
        with self._lock:
            return sorted(self._projects)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(store) for store in self._projects.values())

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if any project store is inconsistent. O(n)."""
        with self._lock:
            for project_id, store in self._projects.items():
                if store.project_id != project_id:
                    raise AssertionError(f"store for {store.project_id} filed as {project_id}")
                store.check_invariants()

    # --- dump / load -----------------------------------------------------------------

    def dump(self, path: str | Path) -> int:
        """Write every row to ``path`` as JSON Lines; returns the row count. O(n)."""
        with self._lock:
            stores = [self._projects[pid] for pid in sorted(self._projects)]
            rows = [row for store in stores for row in store]
        with open(path, "w", encoding="utf-8") as out:
            return dumpfile.write_rows(rows, out)

    def load_rows(self, path: str | Path) -> int:
        """Add the rows of a dump file; returns how many. All or nothing.

        The whole file is parsed and checked before any row is stored, so a bad file
        raises :class:`refengine.errors.DumpFormatError` and leaves the engine as it
        was. O(m log(n + m)) for m rows.
        """
        rows = dumpfile.read_rows(path)
        self._store(rows)
        return len(rows)

    @classmethod
    def load(cls, path: str | Path, **engine_options: Any) -> Engine:
        """A new engine holding the rows of a dump file (options as for ``Engine``)."""
        engine = cls(**engine_options)
        engine.load_rows(path)
        return engine

    # =================================================================================
    # --- The rest of the feedback family (SEMANTICS "Query", "Purge", "Replace",
    # --- "Payload schema", "Server info")
    # =================================================================================

    def feedback_query(self, req: FeedbackQueryReq | Mapping[str, Any]) -> FeedbackQueryRes:
        """Rows matching a Query, sorted and paged, with ``total_count``; see
        spec/SEMANTICS.md, "Query".

        The request is checked and compiled first (``InvalidRequest`` before any row is
        read); the project's rows are copied under the lock (``O(n)``) and folded
        outside it.
        """
        request = coerce_request(FeedbackQueryReq, req)
        query_plan = feedback_query.plan(request)
        with self._lock:
            rows = list(self._store_to_read(request.project_id))
        return feedback_query.fold(query_plan, rows)

    def feedback_purge(self, req: FeedbackPurgeReq | Mapping[str, Any]) -> FeedbackPurgeRes:
        """Delete a project's rows by id; see spec/SEMANTICS.md, "Purge".

        Only the id shapes are accepted (``InvalidRequest`` otherwise, nothing removed);
        unknown ids are ignored. Atomic: no query sees half a purge. ``O(n)``.
        """
        request = coerce_request(FeedbackPurgeReq, req)
        ids = purge.purge_ids(request)
        with self._lock:
            store = self._projects.get(request.project_id)
            if store is not None:
                store.remove_ids(ids)
                if not len(store):
                    del self._projects[request.project_id]
        return FeedbackPurgeRes()

    def feedback_replace(self, req: FeedbackReplaceReq | Mapping[str, Any]) -> FeedbackReplaceRes:
        """Replace the rows with ``feedback_id`` by a new row; see spec/SEMANTICS.md,
        "Replace".

        The whole create chain runs first; a rejected replacement removes nothing
        (Decision). Then, under the lock, the old rows go and the new one is stored.
        ``O(n)``.
        """
        request = coerce_request(FeedbackReplaceReq, req)
        create = replace.create_request(request)
        prepared = self._prepare(create, self._next_id)
        with self._lock:
            store = self._projects.get(request.project_id)
            if store is not None:
                store.remove_ids(frozenset([request.feedback_id]))
            self._store([prepared.row])
        return FeedbackReplaceRes.model_validate(prepared.response.model_dump())

    def feedback_payload_schema(
        self, req: FeedbackPayloadSchemaReq | Mapping[str, Any]
    ) -> FeedbackPayloadSchemaRes:
        """The payload paths and value types of a window; see spec/SEMANTICS.md,
        "Payload schema". A missing ``end`` is the engine clock's now (the range checks
        then apply to it as request-model errors)."""
        request = coerce_request(FeedbackPayloadSchemaReq, req)
        if request.end is None:
            request = FeedbackPayloadSchemaReq.model_validate(
                {**request.model_dump(), "end": self.clock()}
            )
        schema_plan = payload_schema.plan(request)
        rows = self.window(request.project_id, schema_plan.after_ms, schema_plan.before_ms)
        return payload_schema.fold(schema_plan, rows)

    def server_info(self) -> ServerInfoRes:
        """What ``GET /server_info`` answers; see spec/SEMANTICS.md, "Server info"."""
        from . import __version__  # noqa: PLC0415 (the package imports this module)

        return server_info.server_info(__version__)
