"""The compact read-only mapping stored rows keep their scorer maps in."""

from __future__ import annotations

import copy
import pickle
import sys
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refengine.frozenmap import EMPTY, FrozenMap, distinct_keys, items_of

maps = st.dictionaries(st.text(max_size=5), st.floats(allow_nan=False), max_size=6)


@given(maps)
def test_behaves_as_the_dict_it_was_made_from(source: dict[str, float]) -> None:
    m = FrozenMap(source)
    assert isinstance(m, Mapping)
    assert m == source and source == m
    assert list(m) == list(source) and list(m.items()) == list(source.items())
    assert len(m) == len(source)
    for key, value in source.items():
        assert key in m and m[key] == value and m.get(key) == value
    assert dict(m) == source


def test_missing_keys_and_order_insensitive_equality() -> None:
    m = FrozenMap({"a": 1.0, "b": 2.0})
    with pytest.raises(KeyError):
        m["c"]
    assert m.get("c") is None and m.get("c", 0.0) == 0.0
    assert m == FrozenMap({"b": 2.0, "a": 1.0}) == {"b": 2.0, "a": 1.0}
    assert m != {"a": 1.0} and m != FrozenMap({"a": 1.0, "b": 3.0})
    assert m != [("a", 1.0), ("b", 2.0)]  # not a mapping
    assert FrozenMap() == {} == EMPTY and not EMPTY


def test_cannot_be_changed() -> None:
    m = FrozenMap({"a": 1.0})
    with pytest.raises(TypeError):
        m["a"] = 2.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        m.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        hash(m)  # equal to a dict, so unhashable like one


def test_maps_with_the_same_keys_share_one_key_tuple() -> None:
    a, b = FrozenMap({"_rating_": 0.1}), FrozenMap({"_rating_": 0.2})
    assert a._keys is b._keys


def test_is_smaller_than_a_dict() -> None:
    m = FrozenMap({"_rating_": 0.5})
    own = sys.getsizeof(m) + sys.getsizeof(m._values)  # the key tuple is shared
    assert own < sys.getsizeof({"_rating_": 0.5}) / 1.5


def test_copies_and_pickles_to_an_equal_map() -> None:
    m = FrozenMap({"a": 1.0, "b": -0.0})
    for clone in (pickle.loads(pickle.dumps(m)), copy.copy(m), copy.deepcopy(m)):
        assert type(clone) is FrozenMap and clone == m and list(clone) == ["a", "b"]
    assert repr(m) == "FrozenMap({'a': 1.0, 'b': -0.0})"


def test_items_and_values_come_in_order_and_behave_as_views() -> None:
    m = FrozenMap({"b": 2.0, "a": 1.0})
    assert list(m.items()) == [("b", 2.0), ("a", 1.0)] and list(m.values()) == [2.0, 1.0]
    assert ("a", 1.0) in m.items() and ("a", 2.0) not in m.items() and 2.0 in m.values()
    assert len(m.items()) == len(m.values()) == 2
    assert m.items() == {"a": 1.0, "b": 2.0}.items()
    assert list(EMPTY.items()) == [] and list(EMPTY.values()) == []


def test_items_of_a_large_map_do_not_look_each_key_up(monkeypatch: pytest.MonkeyPatch) -> None:
    m = FrozenMap({f"k{i}": float(i) for i in range(1000)})

    def no_lookups(self: FrozenMap[float], key: str) -> float:
        raise AssertionError("items() looked a key up")

    monkeypatch.setattr(FrozenMap, "__getitem__", no_lookups)
    assert sum(value for _, value in m.items()) == sum(m.values()) == 499_500.0


def test_items_of_gives_keys_and_values_of_frozen_and_plain_maps() -> None:
    frozen = [FrozenMap({"a": 1.0, "b": 2.0}), FrozenMap({"a": 3.0, "b": 4.0}), FrozenMap()]
    keys, values = items_of(frozen)
    assert keys == [("a", "b"), ("a", "b"), ()]
    assert keys[0] is keys[1]  # the shared keys tuple itself
    assert values == [(1.0, 2.0), (3.0, 4.0), ()]
    mixed = [{"b": 1.0, "a": 2.0}, frozen[0]]
    assert items_of(mixed) == ([("b", "a"), ("a", "b")], [(1.0, 2.0), (1.0, 2.0)])


@given(st.lists(maps, max_size=8), st.booleans())
def test_distinct_keys_are_every_key_of_any_map(
    sources: list[dict[str, float]], plain: bool
) -> None:
    given_maps: list[Mapping[str, float]] = [FrozenMap(m) for m in sources]
    if plain and given_maps:
        given_maps[0] = sources[0]  # one plain dict: the general path
    assert distinct_keys(given_maps) == {key for m in sources for key in m}
