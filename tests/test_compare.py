"""The comparison rules of the conformance kit (refengine.conformance.compare)."""

from __future__ import annotations

from typing import Any

import pytest

from refengine.conformance.compare import (
    MISSING,
    CompareRules,
    Difference,
    Unordered,
    diff,
    parse_instant,
    parse_pattern,
    render_path,
)

AGG_RULES = CompareRules(unordered=(Unordered("$.buckets", "time_bucket_start_ms"),))


def paths(diffs: list[Difference]) -> list[str]:
    return [d.path for d in diffs]


# --- path rendering and patterns ----------------------------------------------------------


def test_render_path() -> None:
    assert render_path(()) == "$"
    assert render_path(("buckets", 3, "p95_output_score")) == "$.buckets[3].p95_output_score"
    assert render_path(("tag_counts", "a b")) == '$.tag_counts["a b"]'
    assert render_path(("m", "2x", 0)) == '$.m["2x"][0]'


def test_equal_values_have_no_diff() -> None:
    value: dict[str, Any] = {"a": [1, 2.5, None, True, "x", {"b": []}]}
    assert diff(value, value) == []


def test_nested_path_of_a_difference() -> None:
    expected = {"buckets": [{"count": 1}, {"count": 2, "p95_output_score": 0.5}]}
    actual = {"buckets": [{"count": 1}, {"count": 2, "p95_output_score": 0.75}]}
    [d] = diff(expected, actual)
    assert d.path == "$.buckets[1].p95_output_score"
    assert (d.expected, d.actual) == (0.5, 0.75)
    assert d.render().startswith("$.buckets[1].p95_output_score: expected 0.5 → actual 0.75")


def test_missing_and_extra_keys() -> None:
    diffs = diff({"a": 1, "b": 2}, {"a": 1, "c": 3})
    assert [(d.path, d.expected, d.actual) for d in diffs] == [
        ("$.b", 2, MISSING),
        ("$.c", MISSING, 3),
    ]
    assert "expected 2 → actual <missing>" in diffs[0].render()


def test_type_mismatches() -> None:
    assert paths(diff({"a": {"x": 1}}, {"a": [1]})) == ["$.a"]
    assert paths(diff({"a": [1]}, {"a": "garbage"})) == ["$.a"]
    assert paths(diff({"a": 1}, "garbage")) == ["$"]
    assert paths(diff({"a": None}, {"a": 0.0})) == ["$.a"]
    assert paths(diff({"a": "1"}, {"a": 1})) == ["$.a"]


def test_booleans_are_not_numbers() -> None:
    assert paths(diff([True], [1])) == ["$[0]"]
    assert paths(diff([0], [False])) == ["$[0]"]


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("$.a", ("a",), True),
        ("$.a", ("b",), False),
        ("$.buckets[*].timestamp", ("buckets", 7, "timestamp"), True),
        ("$.buckets[*].timestamp", ("buckets", "7", "timestamp"), False),
        ("$.buckets[2].count", ("buckets", 2, "count"), True),
        ("$.buckets[2].count", ("buckets", 3, "count"), False),
        ("$..count", ("buckets", 3, "count"), True),
        ("$..count", ("count",), True),
        ("$..count", ("buckets", 3, "counts"), False),
        ("$.*.x", ("q", "x"), True),
        ('$["a b"]', ("a b",), True),
    ],
)
def test_patterns(pattern: str, path: tuple[Any, ...], hit: bool) -> None:
    rules = CompareRules(ignore=(pattern,))
    expected: Any = 1
    actual: Any = 2
    for part in reversed(path):
        expected = {part: expected} if isinstance(part, str) else [0] * part + [expected]
        actual = {part: actual} if isinstance(part, str) else [0] * part + [actual]
    assert (diff(expected, actual, rules) == []) is hit


def test_bad_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match="must start with"):
        parse_pattern("buckets")
    with pytest.raises(ValueError, match="bad path pattern"):
        parse_pattern("$.a[x]")


# --- ordering -------------------------------------------------------------------------------


def test_arrays_are_ordered_by_default() -> None:
    diffs = diff({"buckets": [1, 2]}, {"buckets": [2, 1]})
    assert paths(diffs) == ["$.buckets[0]", "$.buckets[1]"]


def test_extra_and_missing_elements() -> None:
    assert [(d.path, d.actual) for d in diff([1, 2], [1])] == [("$[1]", MISSING)]
    assert [(d.path, d.expected) for d in diff([1], [1, 5])] == [("$[1]", MISSING)]


def bucket(start: int | None, group: str, count: int) -> dict[str, Any]:
    return {"time_bucket_start_ms": start, "group": {"scorer_id": group}, "total_count": count}


def test_rows_within_one_bucket_are_unordered() -> None:
    expected = {"buckets": [bucket(0, "a", 1), bucket(0, "b", 2), bucket(60, "a", 3)]}
    actual = {"buckets": [bucket(0, "b", 2), bucket(0, "a", 1), bucket(60, "a", 3)]}
    assert diff(expected, actual, AGG_RULES) == []


def test_time_buckets_stay_ordered() -> None:
    expected = {"buckets": [bucket(0, "a", 1), bucket(60, "a", 3)]}
    actual = {"buckets": [bucket(60, "a", 3), bucket(0, "a", 1)]}
    diffs = diff(expected, actual, AGG_RULES)
    assert diffs
    assert diffs[0].path == "$.buckets[0].time_bucket_start_ms"


def test_unbucketed_rows_stay_ordered() -> None:
    """A null bucket start makes no run: grouped totals keep the order production gives."""
    expected = {"buckets": [bucket(None, "a", 1), bucket(None, "b", 2)]}
    actual = {"buckets": [bucket(None, "b", 2), bucket(None, "a", 1)]}
    assert paths(diff(expected, actual, AGG_RULES))[:1] == ["$.buckets[0].group.scorer_id"]


def test_unordered_difference_names_the_element() -> None:
    expected = {"buckets": [bucket(0, "a", 1), bucket(0, "b", 2)]}
    actual = {"buckets": [bucket(0, "b", 2), bucket(0, "a", 7)]}
    [d] = diff(expected, actual, AGG_RULES)
    assert (d.path, d.expected, d.actual) == ("$.buckets[0].total_count", 1, 7)


def test_unordered_missing_row() -> None:
    expected = {"buckets": [bucket(0, "a", 1), bucket(0, "b", 2)]}
    actual = {"buckets": [bucket(0, "b", 2)]}
    [d] = diff(expected, actual, AGG_RULES)
    assert d.path == "$.buckets[0]"
    assert d.actual is MISSING


def test_whole_array_multiset() -> None:
    rules = CompareRules(unordered=(Unordered("$.tags"),))
    assert diff({"tags": ["a", "b", "a"]}, {"tags": ["a", "a", "b"]}, rules) == []
    assert paths(diff({"tags": ["a", "b", "a"]}, {"tags": ["a", "b", "b"]}, rules)) == ["$.tags[2]"]


# --- numbers ----------------------------------------------------------------------------------


def test_float_tolerance() -> None:
    rules = CompareRules(rel=1e-9, abs=1e-12)
    assert diff({"s": 0.30000000000000004}, {"s": 0.3}, rules) == []
    assert diff({"s": 0.0}, {"s": 1e-13}, rules) == []
    [d] = diff({"s": 0.3}, {"s": 0.3001}, rules)
    assert d.path == "$.s"
    assert "tolerance" in d.note


def test_declared_tolerance_is_used() -> None:
    loose = CompareRules.from_json({"tolerance": {"rel": 0.01}})
    assert diff([1.0], [1.005], loose) == []
    assert diff([1.0], [1.005]) != []


def test_counts_are_exact() -> None:
    """An integer expectation (a count) must match exactly, whatever the tolerance."""
    loose = CompareRules(rel=0.5)
    assert paths(diff({"count": 3}, {"count": 4}, loose)) == ["$.count"]
    assert diff({"count": 3}, {"count": 3.0}, loose) == []


def test_exact_paths() -> None:
    rules = CompareRules(exact=("$..window_stats.*.count",))
    expected = {"window_stats": {"s": {"count": 2.0, "avg": 0.1}}}
    actual = {"window_stats": {"s": {"count": 2.0000000001, "avg": 0.1000000000001}}}
    assert paths(diff(expected, actual, rules)) == ["$.window_stats.s.count"]


# --- timestamps -------------------------------------------------------------------------------


def test_timestamps_compare_as_instants() -> None:
    rules = CompareRules(timestamps=("$.buckets[*].timestamp", "$.start"))
    expected = {
        "start": "2024-03-10T07:00:00Z",
        "buckets": [{"timestamp": "2024-03-10T02:00:00-05:00"}],
    }
    actual: dict[str, Any] = {
        "start": "2024-03-10T07:00:00.000000+00:00",
        "buckets": [{"timestamp": "2024-03-10T07:00:00+00:00"}],
    }
    assert diff(expected, actual, rules) == []
    actual["buckets"][0]["timestamp"] = "2024-03-10T02:00:00-04:00"
    [d] = diff(expected, actual, rules)
    assert d.path == "$.buckets[0].timestamp"
    assert d.note == "different instants"


def test_timestamps_without_the_rule_are_strings() -> None:
    assert diff({"t": "2024-01-01T00:00:00Z"}, {"t": "2024-01-01T00:00:00+00:00"}) != []


def test_unparsable_timestamp() -> None:
    rules = CompareRules(timestamps=("$.t",))
    [d] = diff({"t": "2024-01-01T00:00:00Z"}, {"t": "yesterday"}, rules)
    assert d.note == "not an ISO 8601 timestamp"
    [d] = diff({"t": "2024-01-01T00:00:00Z"}, {"t": 12}, rules)
    assert d.path == "$.t"


def test_parse_instant() -> None:
    naive = parse_instant("2024-01-01T00:00:00")
    aware = parse_instant("2024-01-01T01:00:00+01:00")
    assert naive is not None
    assert naive == aware
    assert parse_instant("nope") is None
    assert parse_instant(None) is None


def test_ignored_values_must_still_exist() -> None:
    rules = CompareRules(ignore=("$.id",))
    assert diff({"id": "a", "x": 1}, {"id": "b", "x": 1}, rules) == []
    assert paths(diff({"id": "a", "x": 1}, {"x": 1}, rules)) == ["$.id"]


def test_rules_round_trip_through_json() -> None:
    rules = CompareRules(
        ignore=("$.id",),
        timestamps=("$.t",),
        unordered=(Unordered("$.b", "k"), Unordered("$.c")),
        exact=("$..n",),
        rel=1e-6,
        abs=0.0,
    )
    assert CompareRules.from_json(rules.to_json()) == rules
