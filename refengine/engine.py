"""The :class:`Engine` façade: the trace server's feedback methods, in process.

Each method takes the request model or a plain dict and returns the response model.
A dict that does not fit the model raises pydantic ``ValidationError``; a semantic
failure raises :class:`refengine.errors.InvalidRequest`. Writes are all-or-nothing.

A query runs in three steps: the plan (:mod:`refengine.semantics`: every check and
default), one snapshot of the project's rows, and a fold of that snapshot by the
engine's executor — ``"reference"`` (the plain folds of :mod:`refengine.semantics`
over the window's rows) or ``"fast"`` (:mod:`refengine.fast`, the default). Both
give the same answers.

Thread safety: one engine lock guards the rows. A write holds it while it draws
ids and inserts; a query holds it only to copy its window (``O(k)`` for ``k``
rows), or, for the fast executor, the rows an index lacks. Building or catching
up a project's index happens under that index's own lock, outside the engine
lock (:mod:`refengine.fast.snapshots`), so a create never waits for it; queries
of one project on the fast executor wait for each other's index work (and an
aggregate's fold, which reads the index in place), queries of other projects do
not. On the fast executor a write, once it has released the engine lock, brings
its project's aggregate index up to date whenever the index lags a chunk of rows
behind (:func:`refengine.fast.snapshots.keep_current`; it skips the work when a
query holds the index), so the indexing is paid for as rows arrive, not by the
first aggregate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel

from . import dumpfile, errors
from .clock import Clock, SystemClock
from .errors import format_message
from .fast import aggregate as fast_aggregate
from .fast import snapshots
from .fast import stats as fast_stats
from .fast.aggregate_index import TooWide
from .fast.key_index import lookup_key
from .models import (
    UNKNOWN_FIELD_MODES,
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
    UnknownFields,
    unknown_fields,
    unknown_fields_mode,
)
from .rows import FeedbackRow
from .semantics import aggregate, feedback_query, payload_schema, purge, replace, server_info, stats
from .semantics.aggregate import AggregatePlan
from .semantics.create import (
    IdFactory,
    PreparedCreate,
    check_batch_size,
    prepare_row,
    rows_with_ids,
)
from .semantics.feedback_query import QueryPlan
from .semantics.stats import StatsPlan
from .store import ProjectStore

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")


def coerce_request(
    model: type[ModelT], req: ModelT | Mapping[str, Any], unknown: UnknownFields = "reject"
) -> ModelT:
    """``req`` as a validated ``model``: instances pass through, anything else is
    validated (a dict that does not fit raises pydantic ``ValidationError``); an
    unknown field is refused or dropped as ``unknown`` says (SEMANTICS "Unknown
    fields")."""
    if isinstance(req, model):
        return req
    if unknown_fields_mode() == unknown:
        # The mode is in force already (the usual case): the validator alone, without
        # a context switch and model_validate's wrapper, which cost about as much.
        validated: ModelT = model.__pydantic_validator__.validate_python(req)
        return validated
    with unknown_fields(unknown):
        return model.model_validate(req)


def _drain(items: list[T]) -> Iterator[T]:
    """Yield the items of ``items`` in order, removing each from the list as it goes."""
    items.reverse()
    while items:
        yield items.pop()


ExecutorName = Literal["fast", "reference"]


class Executor(Protocol):
    """Folds a plan over one project's store: takes its snapshot, then folds it."""

    def aggregate(self, plan: AggregatePlan, store: ProjectStore) -> FeedbackAggregateRes: ...

    def stats(self, plan: StatsPlan, store: ProjectStore) -> FeedbackStatsRes: ...

    def query(self, plan: QueryPlan, store: ProjectStore) -> FeedbackQueryRes: ...

    def written(self, store: ProjectStore) -> None:
        """Rows were just stored in ``store`` (called with no lock held)."""


class ReferenceExecutor:
    """The plain folds of :mod:`refengine.semantics` over a copy of the window's rows."""

    def aggregate(self, plan: AggregatePlan, store: ProjectStore) -> FeedbackAggregateRes:
        return aggregate.fold(plan, store.window(plan.after_ms, plan.before_ms))

    def stats(self, plan: StatsPlan, store: ProjectStore) -> FeedbackStatsRes:
        if not plan.metrics:  # Stats / No metrics: no query at all
            return stats.fold(plan, [])
        return stats.fold(plan, store.window(plan.after_ms, plan.before_ms))

    def query(self, plan: QueryPlan, store: ProjectStore) -> FeedbackQueryRes:
        return feedback_query.fold(plan, store.window(None, None))

    def written(self, store: ProjectStore) -> None:
        """Nothing: the reference executor keeps no index."""


class FastExecutor:
    """The folds of :mod:`refengine.fast` over the store's index snapshots.

    A project too wide for the aggregate index (too many distinct rating keys or
    profiles, :mod:`refengine.fast.aggregate_index`) is aggregated by the reference
    fold over its window, which is linear in the window's rows and keys."""

    def aggregate(self, plan: AggregatePlan, store: ProjectStore) -> FeedbackAggregateRes:
        dims = fast_aggregate.partition_dims(plan)
        try:
            with snapshots.aggregate_view(store, dims, plan.after_ms, plan.before_ms) as snapshot:
                return fast_aggregate.fold(plan, snapshot)
        except TooWide:
            return aggregate.fold(plan, store.window(plan.after_ms, plan.before_ms))

    def stats(self, plan: StatsPlan, store: ProjectStore) -> FeedbackStatsRes:
        if not plan.metrics:
            return fast_stats.fold(plan, fast_stats.StatsSnapshot([], []))
        return fast_stats.fold(plan, snapshots.stats_snapshot(store, plan))

    def query(self, plan: QueryPlan, store: ProjectStore) -> FeedbackQueryRes:
        # A query on one id or weave_ref can match only the rows under that key: the
        # same fold over them gives the same answer as over the whole project.
        key = lookup_key(plan.query)
        if key is None:
            return feedback_query.fold(plan, store.window(None, None))
        return feedback_query.fold(plan, snapshots.key_rows(store, *key))

    def written(self, store: ProjectStore) -> None:
        """Keep the store's aggregate index current, a chunk of rows at a time
        (:func:`refengine.fast.snapshots.keep_current`), so that no first aggregate
        has to index the whole project."""
        snapshots.keep_current(store)


EXECUTORS: dict[str, Executor] = {"fast": FastExecutor(), "reference": ReferenceExecutor()}
"""The executors by name, for ``Engine(executor=...)`` and ``refengine serve --executor``."""

DEFAULT_EXECUTOR = "fast"
"""The executor of an ``Engine`` built without one (the test suite's ``--executor``
option changes it, to run every test on either executor)."""


def executor_named(name: str) -> Executor:
    """The executor called ``name``; any other name raises ``ValueError``."""
    executor = EXECUTORS.get(name)
    if executor is None:
        choices = ", ".join(repr(n) for n in EXECUTORS)
        raise ValueError(format_message(errors.UNKNOWN_EXECUTOR, name=name, choices=choices))
    return executor


class FeedbackService(Protocol):
    """What a server or a conformance target needs of an engine: the four feedback
    methods and the clock, identity and unknown-fields mode they run under.
    :class:`Engine` is one; ``refengine.backends.clickhouse.ClickHouseBackend``
    another."""

    clock: Clock
    user_id: str
    unknown_fields: UnknownFields

    def feedback_create(self, req: FeedbackCreateReq | Mapping[str, Any]) -> FeedbackCreateRes: ...

    def feedback_create_batch(
        self, req: FeedbackCreateBatchReq | Mapping[str, Any]
    ) -> FeedbackCreateBatchRes: ...

    def feedback_aggregate(
        self, req: FeedbackAggregateReq | Mapping[str, Any]
    ) -> FeedbackAggregateRes: ...

    def feedback_stats(self, req: FeedbackStatsReq | Mapping[str, Any]) -> FeedbackStatsRes: ...


class Engine:
    """An in-memory trace server for the feedback endpoints.

    ``clock`` stamps each row's ``created_at`` (default: the system clock);
    ``user_id`` is the ``wb_user_id`` of requests without one; ``id_factory`` gives
    the ids of rows created without one (default: a UUIDv7 stamped with the row's
    ``created_at``); ``executor`` folds the queries: ``"fast"`` (default:
    :data:`DEFAULT_EXECUTOR`) or ``"reference"`` (any other name raises
    ``ValueError``), and both answer every request identically; ``unknown_fields``
    is what a request dict's unknown fields do: ``"reject"`` (default, a 422
    ``ValidationError`` as the published pages say) or ``"ignore"`` (dropped, as
    production does since 2026-07-28).

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
        executor: ExecutorName | str | None = None,
        unknown_fields: UnknownFields = "reject",
    ) -> None:
        if unknown_fields not in UNKNOWN_FIELD_MODES:
            raise ValueError(format_message(errors.UNKNOWN_FIELDS_MODE, value=unknown_fields))
        name = DEFAULT_EXECUTOR if executor is None else executor
        self._executor = executor_named(name)
        self.executor: str = name
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.unknown_fields: UnknownFields = unknown_fields
        self.user_id = user_id
        # None: each row gets a UUIDv7 stamped with its own created_at (engine clock).
        self._id_factory = id_factory
        self._projects: dict[str, ProjectStore] = {}
        self._lock = threading.RLock()

    # --- create ----------------------------------------------------------------------

    def feedback_create(self, req: FeedbackCreateReq | Mapping[str, Any]) -> FeedbackCreateRes:
        """Validate and store one feedback row; see spec/SEMANTICS.md, "Create"."""
        request = coerce_request(FeedbackCreateReq, req, self.unknown_fields)
        prepared = self._prepare(request)
        (row,), stores = self._store_prepared([prepared])
        self._written(stores)
        return prepared.response(row)

    def feedback_create_batch(
        self, req: FeedbackCreateBatchReq | Mapping[str, Any]
    ) -> FeedbackCreateBatchRes:
        """Validate every item, then draw ids and store all of them; any failure
        stores none and draws no id (spec/SEMANTICS.md, "Create / Batches"). A
        batch of more than ``MAX_BATCH_ITEMS`` (10,000) items is refused first."""
        request = coerce_request(FeedbackCreateBatchReq, req, self.unknown_fields)
        check_batch_size(len(request.batch))
        items: Iterable[FeedbackCreateReq] = request.batch
        if request is not req:
            # The validated batch is ours alone: let each item model go once it is
            # prepared. Held to the end, every batch's models would survive two young
            # collections and reach the oldest generation, whose growth triggers full
            # collections over every stored row.
            items = _drain(request.batch)
        prepared = [self._prepare(item) for item in items]
        rows, stores = self._store_prepared(prepared)
        self._written(stores)
        return FeedbackCreateBatchRes(
            res=[p.response(row) for p, row in zip(prepared, rows, strict=True)]
        )

    def _prepare(self, request: FeedbackCreateReq) -> PreparedCreate:
        return prepare_row(request, now=self.clock(), default_user_id=self.user_id)

    def _store_prepared(
        self, prepared: list[PreparedCreate]
    ) -> tuple[list[FeedbackRow], list[ProjectStore]]:
        """The second phase of a create: under the lock, draw the missing ids
        (:func:`refengine.semantics.create.rows_with_ids`), then store the rows.
        Returns them, and the stores they went into."""
        with self._lock:
            rows = rows_with_ids(prepared, self._id_factory)
            stores = self._store(rows)
        return rows, stores

    # --- queries ---------------------------------------------------------------------

    def feedback_aggregate(
        self, req: FeedbackAggregateReq | Mapping[str, Any]
    ) -> FeedbackAggregateRes:
        """Counts and rating sums per (time bucket, group); see spec/SEMANTICS.md,
        "Aggregate". One plan, one snapshot of the project, one fold."""
        plan = aggregate.plan(coerce_request(FeedbackAggregateReq, req, self.unknown_fields))
        return self._executor.aggregate(plan, self._store_to_read(plan.project_id))

    def feedback_stats(self, req: FeedbackStatsReq | Mapping[str, Any]) -> FeedbackStatsRes:
        """Payload metrics per time bucket and over the window; see spec/SEMANTICS.md,
        "Stats". A missing ``end`` is the engine clock's now
        (:func:`refengine.semantics.stats.plan`)."""
        plan = stats.plan(coerce_request(FeedbackStatsReq, req, self.unknown_fields), self.clock())
        return self._executor.stats(plan, self._store_to_read(plan.project_id))

    def insert_rows(self, rows: Iterable[FeedbackRow]) -> None:
        """Store rows that are already built (from a dump, or a bulk generator).

        No create validation runs: use it only for rows made by :func:`make_row` from
        trusted data. O(m log(n + m)) for m rows.
        """
        self._written(self._store(rows))

    def _store(self, rows: Iterable[FeedbackRow]) -> list[ProjectStore]:
        """Store ``rows`` under the lock; returns the stores they went into."""
        stores = []
        with self._lock:
            by_project: dict[str, list[FeedbackRow]] = {}
            for row in rows:
                by_project.setdefault(row.project_id, []).append(row)
            for project_id, project_rows in by_project.items():
                store = self._projects.get(project_id)
                if store is None:
                    store = self._projects[project_id] = ProjectStore(project_id, self._lock)
                store.update(project_rows)
                stores.append(store)
        return stores

    def _written(self, stores: list[ProjectStore]) -> None:
        """Tell the executor that rows went into ``stores``, once the lock is
        released (the fast executor indexes them then)."""
        for store in stores:
            self._executor.written(store)

    # --- reading ---------------------------------------------------------------------

    def window(
        self, project_id: str, after_ms: int | None = None, before_ms: int | None = None
    ) -> list[FeedbackRow]:
        """A snapshot of one project's rows with ``after_ms <= created_at_ms < before_ms``.

        Runtime complexity: ``O(log n + k)``; the list is the caller's to keep.
        """
        return self._store_to_read(project_id).window(after_ms, before_ms)

    def _store_to_read(self, project_id: str) -> ProjectStore:
        with self._lock:
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
            stores = list(self._projects.items())
        # Each store takes its index locks before the engine lock: not under it here.
        for project_id, store in stores:
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
        self._written(self._store(rows))
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
        read); then the rows it can match are copied under the lock and folded outside
        it: every row (``O(n)``) on the reference executor, and on the fast one too
        unless the query is a ``$eq`` on ``id`` or ``weave_ref`` (alone or in an
        ``$and``), whose ``k`` rows come from an index (``O(k)``,
        :mod:`refengine.fast.key_index`).
        """
        request = coerce_request(FeedbackQueryReq, req, self.unknown_fields)
        query_plan = feedback_query.plan(request)
        return self._executor.query(query_plan, self._store_to_read(request.project_id))

    def feedback_purge(self, req: FeedbackPurgeReq | Mapping[str, Any]) -> FeedbackPurgeRes:
        """Delete a project's rows by id; see spec/SEMANTICS.md, "Purge".

        Only the id shapes are accepted (``InvalidRequest`` otherwise, nothing removed);
        unknown ids are ignored. Atomic: no query sees half a purge. ``O(n)``.
        """
        request = coerce_request(FeedbackPurgeReq, req, self.unknown_fields)
        ids = purge.purge_ids(request)
        with self._lock:
            store = self._projects.get(request.project_id)
            if store is not None:
                store.remove_ids(ids)
                if not len(store):  # projects() lists only projects with rows
                    del self._projects[request.project_id]
        return FeedbackPurgeRes()

    def feedback_replace(self, req: FeedbackReplaceReq | Mapping[str, Any]) -> FeedbackReplaceRes:
        """Replace the rows with ``feedback_id`` by a new row; see spec/SEMANTICS.md,
        "Replace".

        The whole create chain runs first; a rejected replacement removes nothing
        (Decision). Then, under the lock, the old rows go and the new one is stored,
        so no query sees the project between the two. ``O(n)``.
        """
        request = coerce_request(FeedbackReplaceReq, req, self.unknown_fields)
        prepared = self._prepare(replace.create_request(request))
        with self._lock:
            store = self._projects.get(request.project_id)
            if store is not None:
                store.remove_ids(frozenset([request.feedback_id]))
            (row,), stores = self._store_prepared([prepared])
        self._written(stores)
        return FeedbackReplaceRes.model_validate(prepared.response(row).model_dump())

    def feedback_payload_schema(
        self, req: FeedbackPayloadSchemaReq | Mapping[str, Any]
    ) -> FeedbackPayloadSchemaRes:
        """The payload paths and value types of a window; see spec/SEMANTICS.md,
        "Payload schema". A missing ``end`` is the engine clock's now
        (:func:`refengine.semantics.payload_schema.plan`)."""
        request = coerce_request(FeedbackPayloadSchemaReq, req, self.unknown_fields)
        schema_plan = payload_schema.plan(request, self.clock())
        rows = self.window(request.project_id, schema_plan.after_ms, schema_plan.before_ms)
        return payload_schema.fold(schema_plan, rows)

    def server_info(self) -> ServerInfoRes:
        """What ``GET /server_info`` answers; see spec/SEMANTICS.md, "Server info"."""
        from . import __version__  # noqa: PLC0415 (the package imports this module)

        return server_info.server_info(__version__)
