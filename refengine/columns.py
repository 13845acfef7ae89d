"""Column storage of the fields ``POST /feedback/aggregate`` reads.

A :class:`Columns` holds a run of rows, in store order, as parallel columns:

* ``ms`` — ``created_at_ms`` (the row's own ``int`` objects, so no copies);
* ``profile`` — a small integer naming the row's string dimensions (the tuple of
  :data:`PROFILE_FIELDS`), decoded by :class:`Codebook` ``profiles``;
* ``sig`` — a small integer naming the row's *signature* (its tags and the keys
  of its rating map), decoded by :class:`Codebook` ``signatures``;
* ``ratings`` — per rating key, the positions (``array('q')``) of the rows carrying
  it and their values, both in store order: a sparse column per key.

Rows of a project repeat few profiles and signatures, so a filter or a count is
decided once per *distinct* code and applied with C-level passes (``set``,
``Counter``, ``itertools.compress``). A rating sum is one ``sum`` over a contiguous
slice of a value column, so values are still added one by one in store order.

Every operation here is C-level per row; the only Python loops run over distinct
codes, over rating keys, or (in :meth:`Columns.extend_rows`) over the rows of a
project with more than :data:`MANY_RATING_KEYS` distinct keys.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from itertools import accumulate, compress, pairwise, repeat
from operator import attrgetter, contains, getitem, sub
from typing import Any, Generic, NamedTuple, TypeVar

from .rows import FeedbackRow

PROFILE_FIELDS: tuple[str, ...] = (
    "feedback_type",
    "scorer_id",
    "monitor_id",
    "span_agent_name",
    "span_agent_version",
    "span_status_code",
    "span_type",
)
"""The string dimensions aggregate filters or groups on, in profile-tuple order."""

MANY_RATING_KEYS = 16
"""Above this many distinct keys in a run of new rows, rating columns are filled
row by row instead of one C-level pass per key."""

_profile_of = attrgetter(*PROFILE_FIELDS)
_ms_of = attrgetter("created_at_ms")
_tags_of = attrgetter("scorer_tags")
_ratings_of = attrgetter("scorer_ratings")

K = TypeVar("K", bound=Hashable)


class Signature(NamedTuple):
    """What the counts of a row depend on, besides its rating values. Canonical:
    tags and keys sorted, so rows that count alike share one signature."""

    tags: tuple[str, ...]  # sorted; a repeated tag stays repeated
    keys: tuple[str, ...]  # rating keys, sorted
    scored: bool  # at least one tag or one rating key


class Codebook(Generic[K]):
    """Small integer codes for hashable values, each decoded to a canonical value.

    ``canonical`` (default: the value itself) maps a raw value to the value stored;
    raw values with the same canonical value share a code. Codes are never reused
    or removed, so a code read from a column stays valid while new codes are added.
    """

    __slots__ = ("_canonical", "_code_of_value", "codes", "values")

    def __init__(self, canonical: Callable[[Any], K] | None = None) -> None:
        self.codes: dict[Any, int] = {}  # raw value -> code
        self.values: list[K] = []  # code -> canonical value
        self._code_of_value: dict[K, int] = {}
        self._canonical = canonical

    def __len__(self) -> int:
        return len(self.values)

    def encode_all(self, items: Sequence[Any]) -> list[int]:
        """The codes of ``items``, adding new values first. ``O(len(items))``; one
        Python step per raw value not seen before."""
        codes = self.codes
        for raw in set(items).difference(codes):
            value = raw if self._canonical is None else self._canonical(raw)
            code = self._code_of_value.get(value)
            if code is None:
                code = self._code_of_value[value] = len(self.values)
                self.values.append(value)
            codes[raw] = code
        return list(map(codes.__getitem__, items))


RatingColumn = tuple["array[int]", list[float]]


class Columns:
    """Parallel columns of a run of rows in store order (see the module docstring).

    Positions in ``ratings`` count rows of this object: the row at ``ms[i]`` is
    position ``i``.
    """

    __slots__ = ("ms", "profile", "ratings", "sig")

    def __init__(self) -> None:
        self.ms: list[int] = []
        self.profile: list[int] = []
        self.sig: list[int] = []
        self.ratings: dict[str, RatingColumn] = {}

    def __len__(self) -> int:
        return len(self.ms)

    # --- building ---------------------------------------------------------------------

    def extend_rows(
        self,
        rows: Sequence[FeedbackRow],
        profiles: Codebook[tuple[str, ...]],
        signatures: Codebook[Signature],
    ) -> None:
        """Append ``rows`` (in store order). ``O(m)`` for ``m`` rows with a few
        rating keys among them: a handful of C-level passes plus one per key."""
        if not rows:
            return
        offset = len(self.ms)
        tags = list(map(_tags_of, rows))
        maps: list[Mapping[str, float]] = list(map(_ratings_of, rows))
        key_tuples = list(map(tuple, maps))
        self.ms.extend(map(_ms_of, rows))
        self.profile.extend(profiles.encode_all(list(map(_profile_of, rows))))
        self.sig.extend(signatures.encode_all(list(zip(tags, key_tuples, strict=True))))
        keys = set().union(*key_tuples)
        if len(keys) <= MANY_RATING_KEYS:
            for key in sorted(keys):
                present = list(map(contains, maps, repeat(key)))
                column = self._rating_column(key)
                column[0].extend(compress(range(offset, offset + len(rows)), present))
                column[1].extend(map(getitem, compress(maps, present), repeat(key)))
        else:
            for position, mapping in enumerate(maps, offset):
                for key, value in mapping.items():
                    column = self._rating_column(key)
                    column[0].append(position)
                    column[1].append(value)

    def _rating_column(self, key: str) -> RatingColumn:
        column = self.ratings.get(key)
        if column is None:
            column = self.ratings[key] = (array("q"), [])
        return column

    def extend(self, other: Columns) -> None:
        """Append every row of ``other``. ``O(len(other))``."""
        offset = len(self.ms)
        self.ms.extend(other.ms)
        self.profile.extend(other.profile)
        self.sig.extend(other.sig)
        for key, (positions, values) in other.ratings.items():
            column = self._rating_column(key)
            column[0].extend(map(sub, positions, repeat(-offset)))
            column[1].extend(values)

    def truncate(self, from_ms: int) -> None:
        """Drop every row with ``created_at_ms >= from_ms`` (a suffix, since rows are
        in time order). ``O(log m + dropped)`` per column."""
        cut = bisect_left(self.ms, from_ms)
        if cut == len(self.ms):
            return
        del self.ms[cut:], self.profile[cut:], self.sig[cut:]
        for key, (positions, values) in list(self.ratings.items()):
            at = bisect_left(positions, cut)
            if at == 0:
                del self.ratings[key]
            else:
                del positions[at:], values[at:]

    # --- reading ----------------------------------------------------------------------

    def span(self, after_ms: int | None, before_ms: int | None) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the rows with ``after_ms <= ms < before_ms``.
        Two bisections: ``O(log m)``."""
        lo = 0 if after_ms is None else bisect_left(self.ms, after_ms)
        hi = len(self.ms) if before_ms is None else bisect_left(self.ms, before_ms)
        return lo, max(lo, hi)

    def take(self, lo: int, hi: int, keep: Sequence[Any] | None = None) -> Columns:
        """A new :class:`Columns` of rows ``[lo, hi)`` — only those whose ``keep``
        entry (indexed from ``lo``) is truthy when ``keep`` is given — positions
        renumbered from 0. ``O(hi - lo)`` plus two bisections per rating key."""
        out = Columns()
        if keep is None:
            out.ms = self.ms[lo:hi]
            out.profile = self.profile[lo:hi]
            out.sig = self.sig[lo:hi]
        else:
            out.ms = list(compress(self.ms[lo:hi], keep))
            out.profile = list(compress(self.profile[lo:hi], keep))
            out.sig = list(compress(self.sig[lo:hi], keep))
            rank = list(accumulate(keep, initial=0))  # rank[i]: kept rows before lo + i
        for key, (positions, values) in self.ratings.items():
            i = bisect_left(positions, lo)
            j = bisect_left(positions, hi, i)
            if i == j:
                continue
            relative = list(map(sub, positions[i:j], repeat(lo)))
            if keep is None:
                out.ratings[key] = (array("q", relative), values[i:j])
                continue
            kept = list(map(keep.__getitem__, relative))
            renumbered = array("q", map(rank.__getitem__, compress(relative, kept)))
            if renumbered:
                out.ratings[key] = (renumbered, list(compress(values[i:j], kept)))
        return out

    def check(self) -> None:
        """Raise ``AssertionError`` unless the columns are consistent. ``O(m)``."""
        size = len(self.ms)
        if len(self.profile) != size or len(self.sig) != size:
            raise AssertionError("columns of different lengths")
        if any(a > b for a, b in pairwise(self.ms)):
            raise AssertionError("ms column out of order")
        for key, (positions, values) in self.ratings.items():
            if len(positions) != len(values) or not positions:
                raise AssertionError(f"rating column {key!r} malformed")
            if positions[0] < 0 or positions[-1] >= size:
                raise AssertionError(f"rating column {key!r} points outside the rows")
            if any(a >= b for a, b in pairwise(positions)):
                raise AssertionError(f"rating column {key!r} positions not increasing")


def _signature(pair: tuple[tuple[str, ...], tuple[str, ...]]) -> Signature:
    tags, keys = pair
    return Signature(tuple(sorted(tags)), tuple(sorted(keys)), bool(tags or keys))


def new_signatures() -> Codebook[Signature]:
    """An empty codebook for ``(tags, rating keys)`` pairs, decoded to
    :class:`Signature`."""
    return Codebook(_signature)


def build_columns(
    rows: Iterable[FeedbackRow],
    profiles: Codebook[tuple[str, ...]],
    signatures: Codebook[Signature],
) -> Columns:
    """A new :class:`Columns` holding ``rows`` (in store order). ``O(m)``."""
    columns = Columns()
    columns.extend_rows(list(rows), profiles, signatures)
    return columns


__all__ = [
    "MANY_RATING_KEYS",
    "PROFILE_FIELDS",
    "Codebook",
    "Columns",
    "Signature",
    "build_columns",
    "new_signatures",
]
