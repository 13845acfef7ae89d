"""The ClickHouse backend (chdb) against the in-memory engine (Hypothesis): every
query over random rows — filter, projection, order, page — and every payload schema
gets the same answer or the same refusal. Skipped when the clickhouse extra is not installed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given

pytest.importorskip("chdb")

from refengine import Engine, InvalidRequest
from refengine.backends.clickhouse import ChdbConnection, ClickHouseBackend
from refengine.conformance.targets import counting_ids
from strategies import datasets, payload_schema_requests, populate, query_requests


@pytest.fixture(scope="module")
def backend() -> Iterator[ClickHouseBackend]:
    b = ClickHouseBackend(ChdbConnection(max_threads=1))
    yield b
    b.close()


def _answer(target: Any, request: dict[str, Any], method: str = "feedback_query") -> Any:
    try:
        return getattr(target, method)(request)
    except InvalidRequest as error:
        return error.reason


def _load(backend: ClickHouseBackend, dataset: list[Any]) -> Engine:
    """The dataset in a new engine and in the emptied backend, with the same ids."""
    backend.connection.query(f"TRUNCATE TABLE {backend.connection.table}", {})
    engine = populate(dataset, Engine(id_factory=counting_ids()))
    backend._id_factory = counting_ids()
    populate(dataset, backend)  # type: ignore[arg-type]  # the engine's methods
    return engine


@given(datasets(max_size=10), query_requests())
def test_every_query_is_answered_as_the_engine_answers_it(
    backend: ClickHouseBackend, dataset: list[Any], request: dict[str, Any]
) -> None:
    engine = _load(backend, dataset)
    assert _answer(backend, request) == _answer(engine, request)


@given(datasets(max_size=10), payload_schema_requests())
def test_every_payload_schema_is_the_engines(
    backend: ClickHouseBackend, dataset: list[Any], request: dict[str, Any]
) -> None:
    engine = _load(backend, dataset)
    method = "feedback_payload_schema"
    assert _answer(backend, request, method) == _answer(engine, request, method)
