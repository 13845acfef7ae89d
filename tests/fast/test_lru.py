"""The least-recently-used bookkeeping of the query indexes (``refengine.fast.lru``)."""

from __future__ import annotations

from refengine.fast.lru import use


def test_use_makes_once_and_keeps_the_most_recently_used() -> None:
    cache: dict[str, list[str]] = {}
    made: list[str] = []

    def maker(key: str):  # type: ignore[no-untyped-def]
        return lambda: made.append(key) or [key]

    a = use(cache, "a", maker("a"), 2)
    assert use(cache, "a", maker("a"), 2) is a  # found, not made again
    use(cache, "b", maker("b"), 2)
    use(cache, "a", maker("a"), 2)  # a is now the most recently used
    c = use(cache, "c", maker("c"), 2)  # drops b, the least recently used
    assert list(cache) == ["a", "c"] and cache["c"] is c
    assert made == ["a", "b", "c"]


def test_a_limit_of_one_keeps_only_the_last() -> None:
    cache: dict[int, int] = {}
    assert [use(cache, k, lambda k=k: k * 10, 1) for k in (1, 2, 1)] == [10, 20, 10]
    assert cache == {1: 10}
