"""The json_path reader for stats metrics (ClickHouse JSONExtract semantics)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from refengine.paths import INT_MAX, INT_MIN, PathReader, compile_path, found, split_path

NUMERIC = compile_path("output.score", "numeric")
NAN = float("nan")
BOOLEAN = compile_path("output.passed", "boolean")
LABEL = compile_path("output.label", "categorical")


def values_of(reader: PathReader, payloads: list[dict[str, Any]]) -> list[float]:
    """The values ``reader.column`` finds in ``payloads``, in order."""
    assert reader.column is not None
    column = reader.column(payloads)
    assert len(column) == len(payloads)  # one entry per payload
    return found(column)


def test_split_path_keeps_every_part_as_a_key() -> None:
    assert split_path("output.0.a b") == ("output", "0", "a b")
    assert split_path("score") == ("score",)


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.5, 0.5),
        (3, 3.0),
        (-7, -7.0),
        (1e3, 1000.0),
        (-0.0, -0.0),
        ("0.5", None),  # a string is never a number, even if it reads as one
        ("3", None),
        (True, None),  # a boolean is not a number
        (False, None),
        (None, None),
        ([0.5], None),
        ({"v": 1}, None),
        (INT_MAX, float(2**64 - 1)),
        (INT_MAX + 1, None),  # ClickHouse reads it back as text
        (INT_MIN, float(-(2**63))),
        (INT_MIN - 1, None),
    ],
)
def test_numeric_reads_json_numbers_only(score: Any, expected: float | None) -> None:
    payload = {"output": {"score": score}}
    got = NUMERIC.one(payload)
    assert got == expected
    assert type(got) is type(expected)
    assert values_of(NUMERIC, [payload]) == ([] if expected is None else [expected])


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"output": None},
        {"output": 0.5},  # a non-object on the way
        {"output": "score"},
        {"output": [{"score": 0.5}]},  # a value inside an array is no value
        {"output": {"Score": 0.5}},  # keys are case-sensitive
        {"outputs": {"score": 0.5}},
    ],
)
def test_missing_or_unreachable_is_no_value(payload: dict[str, Any]) -> None:
    assert NUMERIC.one(payload) is None
    assert values_of(NUMERIC, [payload]) == []
    assert BOOLEAN.one(payload) is None
    assert LABEL.one(payload) == ""


def test_an_all_digit_part_is_a_key_never_an_array_index() -> None:
    reader = compile_path("output.0", "numeric")
    assert reader.one({"output": {"0": 4}}) == 4.0
    assert reader.one({"output": [4, 5]}) is None
    payloads: list[dict[str, Any]] = [{"output": {"0": 4}}, {"output": [4]}, {"output": {"1": 5}}]
    assert values_of(reader, payloads) == [4.0]


def test_a_part_with_a_space_is_a_key() -> None:
    reader = compile_path("output.a b", "numeric")
    assert reader.one({"output": {"a b": 2.5}}) == 2.5
    assert reader.one({"output": {"a": {"b": 2.5}}}) is None


def test_single_part_and_deep_paths() -> None:
    assert compile_path("score", "numeric").one({"score": 1}) == 1.0
    deep = compile_path("a.b.c.d", "numeric")
    assert deep.one({"a": {"b": {"c": {"d": 0.25}}}}) == 0.25
    assert deep.one({"a": {"b": {"c": 0.25}}}) is None
    assert values_of(deep, [{"a": {"b": {"c": {"d": 0.25}}}}, {"a": 1}, {}]) == [0.25]


@pytest.mark.parametrize(
    ("passed", "expected"),
    [
        (True, 1.0),
        (False, 0.0),
        ("true", None),
        (1, None),
        (0, None),
        (1.0, None),
        (None, None),
        ([True], None),
    ],
)
def test_boolean_reads_true_and_false_only(passed: Any, expected: float | None) -> None:
    payload = {"output": {"passed": passed}}
    assert BOOLEAN.one(payload) == expected
    assert values_of(BOOLEAN, [payload]) == ([] if expected is None else [expected])


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("cat", "cat"),
        ("", ""),
        (None, ""),
        (3, "3"),
        (0.5, "0.5"),
        (True, "true"),
        (False, "false"),
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        (["x", None], '["x",null]'),
        ("é", "é"),
    ],
)
def test_categorical_is_never_no_value(label: Any, expected: str) -> None:
    payload = {"output": {"label": label}}
    assert LABEL.one(payload) == expected
    assert LABEL.column is None  # stats keeps no categorical values


def test_column_keeps_positions_and_found_drops_no_values() -> None:
    payloads: list[dict[str, Any]] = [
        {"output": {"score": 0.25}},
        {"output": {"score": "0.5"}},
        {"output": {"score": 2}},
        {"output": {"score": True}},
        {"output": {"score": 2**70}},
        {"output": {"score": -1.5}},
        {"output": [1]},
    ]
    assert NUMERIC.column is not None
    column = NUMERIC.column(payloads)
    expected = [0.25, None, 2.0, None, None, -1.5, None]
    assert [None if math.isnan(v) else v for v in column] == expected
    assert found(column) == [0.25, 2.0, -1.5]
    assert [NUMERIC.one(p) for p in payloads] == expected


def test_reader_remembers_its_path() -> None:
    assert NUMERIC.path == "output.score"
    assert NUMERIC.keys == ("output", "score")
    assert NUMERIC.value_type == "numeric"


def test_a_path_longer_than_the_payloads_are_deep_reads_no_value() -> None:
    reader = compile_path(".".join(["a"] * 200), "numeric")
    assert reader.column is not None
    shallow: list[dict[str, Any]] = [{"a": {"a": {}}}, {"a": 0}, {"a": ""}, {}, {"a": {"a": []}}]
    column = reader.column(shallow)
    assert len(column) == 5 and all(map(math.isnan, column))
    deep: Any = 2.5
    for _ in range(200):
        deep = {"a": deep}
    # one payload deep enough among shallow ones: the walk goes on for it
    assert found(reader.column([*shallow, deep, {}])) == [2.5]
    assert [reader.one(p) for p in (deep, *shallow)] == [2.5, None, None, None, None, None]
