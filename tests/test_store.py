"""The sorted per-project store."""

from __future__ import annotations

import pytest

from refengine.rows import make_row
from refengine.store import ProjectStore


def at(ms: int, ident: str, project: str = "e/p"):  # type: ignore[no-untyped-def]
    return make_row(
        id=ident,
        project_id=project,
        weave_ref="r",
        wb_user_id="u",
        creator=None,
        created_at_us=ms * 1000 + 7,
        feedback_type="t",
        payload={},
    )


def test_sorted_by_time_then_insertion() -> None:
    store = ProjectStore("e/p")
    for ms, ident in [(5, "a"), (1, "b"), (5, "c"), (3, "d"), (5, "e"), (1, "f")]:
        store.add(at(ms, ident))
    assert [r.id for r in store] == ["b", "f", "d", "a", "c", "e"]
    store.check_invariants()
    assert len(store) == 6


def test_window_is_half_open() -> None:
    store = ProjectStore("e/p")
    store.update(at(ms, str(ms)) for ms in range(0, 100, 10))
    assert [r.id for r in store.window(20, 50)] == ["20", "30", "40"]
    assert [r.id for r in store.window(21, 51)] == ["30", "40", "50"]
    assert store.window(50, 50) == []
    assert store.window(60, 10) == []
    assert len(store.window(None, None)) == 10
    assert [r.id for r in store.window(None, 10)] == ["0"]
    assert [r.id for r in store.window(90, None)] == ["90"]


def test_window_is_a_snapshot() -> None:
    store = ProjectStore("e/p")
    store.add(at(1, "a"))
    snap = store.window(0, 10)
    store.add(at(2, "b"))
    assert [r.id for r in snap] == ["a"]


def test_invariant_checker_catches_foreign_rows() -> None:
    store = ProjectStore("e/p")
    store.add(at(1, "x", project="other/p"))
    with pytest.raises(AssertionError, match="of other/p in e/p"):
        store.check_invariants()


# --- removal (purge, replace) ------------------------------------------------------------


def test_remove_ids_keeps_order_and_all_copies_go() -> None:
    store = ProjectStore("e/p")
    for ms, ident in [(5, "a"), (1, "b"), (5, "c"), (3, "a"), (5, "e"), (1, "f")]:
        store.add(at(ms, ident))
    assert store.remove_ids({"a", "zzz"}) == 2
    assert [r.id for r in store] == ["b", "f", "c", "e"]
    store.check_invariants()
    assert store.remove_ids(set()) == 0
    assert store.remove_ids({"nope"}) == 0
    assert store.remove_ids({"e"}) == 1  # the last row: the largest millisecond moves back
    store.check_invariants()
    store.add(at(4, "g"))
    assert [r.id for r in store] == ["b", "f", "g", "c"]
    store.check_invariants()
