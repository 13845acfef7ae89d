"""Column storage of the fields ``POST /feedback/aggregate`` reads.

A :class:`Columns` holds a run of rows, in store order, as parallel columns:

* ``ms`` — ``created_at_ms`` (the row's own ``int`` objects, so no copies);
* ``profile`` — a small integer naming the row's string dimensions (the tuple of
  :data:`PROFILE_FIELDS`), decoded by a :class:`Codebook` of profiles (an
  ``array`` of :data:`CODE_TYPE`, as ``sig`` is);
* ``sig`` — a small integer naming the row's *signature* (its tags and the keys
  of its rating map), decoded by a :class:`Codebook` of :class:`Signature`;
* ``ratings`` — per rating key seen in the run, the value of every row, ``0.0``
  where the row lacks the key (its signature says which rows have it);
* ``sig_bytes`` and ``profile_bytes`` — the ``sig`` and ``profile`` codes again,
  one byte per row, while every code of the run is below 256 (``None`` from the
  first one that is not, for good). Bytes count a code (``bytes.count``), map
  codes to per-row decisions (``bytes.translate``) and find a code
  (``bytes.find``) at memory speed, with no Python object per row.

Rows of a project repeat few profiles and signatures, so a filter or a count is
decided once per *distinct* code and applied with C-level passes (``set``,
``Counter``, ``itertools.compress``). A rating sum is one ``sum`` over a contiguous
slice of a value column: the values are added one by one in store order, and the
``0.0`` of a row without the key changes nothing (a running sum that starts at
``+0.0`` is never ``-0.0``, and ``x + 0.0 == x`` for every other ``x``).

Memory: 8 bytes per row for ``ms`` and for each rating key that occurs in the run
(list pointers; the int and float objects are the rows' own, the ``0.0`` shared), 4
each for ``profile`` and ``sig`` (codes in arrays), 2 for the byte mirrors: 18
bytes plus 8 per rating key.

The per-row work is done by C-level passes (slices, ``map``, ``compress``, ``set``)
except in :meth:`Columns.check` (and :meth:`Columns.extend_rows` for rows whose
rating maps are not :class:`refengine.frozenmap.FrozenMap`); the other Python
loops run over distinct codes, distinct rating-key tuples and rating keys.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from itertools import compress, pairwise, repeat
from operator import getitem, itemgetter
from typing import Any, Generic, NamedTuple, TypeVar

from ..frozenmap import items_of
from ..rows import FeedbackRow

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


def _field_getter(*names: str) -> Callable[[FeedbackRow], Any]:
    # A row is a tuple: indexing it is a C-level step, where each named attribute
    # is a descriptor call (the profile's seven of them cost three times as much).
    return itemgetter(*(FeedbackRow._fields.index(name) for name in names))


_profile_of = _field_getter(*PROFILE_FIELDS)
_ms_of = _field_getter("created_at_ms")
_tags_of = _field_getter("scorer_tags")
_ratings_of = _field_getter("scorer_ratings")

CODE_TYPE = "I"
"""The ``array`` type code of the profile and signature code columns (unsigned, at
least 4 bytes: codes count distinct values, never more than the rows)."""

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

    __slots__ = ("_canonical", "_code_of_value", "codes", "memo", "values")

    def __init__(self, canonical: Callable[[Any], K] | None = None) -> None:
        self.codes: dict[Any, int] = {}  # raw value -> code
        self.values: list[K] = []  # code -> canonical value
        self._code_of_value: dict[K, int] = {}
        self._canonical = canonical
        # What readers derive from codes, kept between their queries: a code's value
        # never changes, so an entry stays true as codes are added.
        self.memo: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self.values)

    def encode_all(self, items: Sequence[Any]) -> list[int]:
        """The codes of ``items``, adding new values first. ``O(len(items))``; one
        Python step per raw value not seen before."""
        codes = self.codes
        try:  # the usual case, every value seen before: one lookup per item
            return list(map(codes.__getitem__, items))
        except KeyError:
            pass
        for raw in set(items).difference(codes):
            value = raw if self._canonical is None else self._canonical(raw)
            code = self._code_of_value.get(value)
            if code is None:
                code = self._code_of_value[value] = len(self.values)
                self.values.append(value)
            codes[raw] = code
        return list(map(codes.__getitem__, items))


def _extended(mirror: bytearray | None, codes: Iterable[int]) -> bytearray | None:
    """``mirror`` with ``codes`` appended, or ``None`` (no mirror from now on) once a
    code does not fit in a byte. ``bytearray.extend`` builds the new bytes before
    it appends them, so a failed extend leaves ``mirror`` as it was."""
    if mirror is None:
        return None
    if isinstance(codes, array):
        # An array is a buffer: bytearray.extend would copy its raw bytes (four per
        # code), not its values.
        codes = codes.tolist()
    try:
        mirror.extend(codes)
    except ValueError:
        return None
    return mirror


class Columns:
    """Parallel columns of a run of rows in store order (see the module docstring).

    Every column — ``ms``, ``profile``, ``sig`` and each ``ratings`` value column —
    has one entry per row, and so has each byte mirror that is not ``None``.
    """

    __slots__ = ("ms", "profile", "profile_bytes", "ratings", "sig", "sig_bytes")

    def __init__(self) -> None:
        self.ms: list[int] = []
        # Codes, not objects: 4 bytes a row (a list costs 8 for its pointer) and
        # nothing for the garbage collector to traverse.
        self.profile: array[int] = array(CODE_TYPE)
        self.sig: array[int] = array(CODE_TYPE)
        self.ratings: dict[str, list[float]] = {}
        self.sig_bytes: bytearray | None = bytearray()
        self.profile_bytes: bytearray | None = bytearray()

    def __len__(self) -> int:
        return len(self.ms)

    # --- building ---------------------------------------------------------------------

    def extend_rows(
        self,
        rows: Sequence[FeedbackRow],
        profiles: Codebook[tuple[str, ...]],
        signatures: Codebook[Signature],
    ) -> None:
        """Append ``rows`` (in store order). ``O(m (1 + r))`` for ``m`` rows and
        ``r`` rating keys in the run: a handful of C-level passes, plus one per key."""
        if not rows:
            return
        tags = list(map(_tags_of, rows))
        key_tuples, value_tuples = items_of(map(_ratings_of, rows))
        self.ms.extend(map(_ms_of, rows))
        profile_codes = profiles.encode_all(list(map(_profile_of, rows)))
        sig_codes = signatures.encode_all(list(zip(tags, key_tuples, strict=True)))
        self.profile.extend(profile_codes)
        self.sig.extend(sig_codes)
        self.profile_bytes = _extended(self.profile_bytes, profile_codes)
        self.sig_bytes = _extended(self.sig_bytes, sig_codes)
        distinct = set(key_tuples)  # few: a FrozenMap's key tuples are shared
        new_keys = set().union(*distinct)
        self._pad_to(len(self.ms) - len(rows), new_keys)
        for key, column in self.ratings.items():
            if key in new_keys:
                column.extend(_values_for(key, distinct, key_tuples, value_tuples))
            else:
                column.extend(repeat(0.0, len(rows)))

    def _pad_to(self, size: int, keys: Iterable[str]) -> None:
        # A key seen for the first time gets a column of 0.0 for the rows before it.
        for key in keys:
            if key not in self.ratings:
                self.ratings[key] = [0.0] * size

    def extend(self, other: Columns) -> None:
        """Append every row of ``other``. ``O(len(other) * (1 + r))``."""
        self._pad_to(len(self.ms), other.ratings)
        self.ms.extend(other.ms)
        self.profile.extend(other.profile)
        self.sig.extend(other.sig)
        self.profile_bytes = _extended(self.profile_bytes, other.profile_bytes or other.profile)
        self.sig_bytes = _extended(self.sig_bytes, other.sig_bytes or other.sig)
        for key, column in self.ratings.items():
            values = other.ratings.get(key)
            column.extend(repeat(0.0, len(other)) if values is None else values)

    def extend_at(self, other: Columns, positions: Sequence[int]) -> None:
        """Append the rows of ``other`` at ``positions`` (ascending, so store order
        is kept), each column gathered by one ``itemgetter`` call: C-level indexing
        straight into a tuple, cheaper than a ``compress`` over the whole of
        ``other`` per column. ``O(len(positions) * (1 + r))``."""
        self._pad_to(len(self.ms), other.ratings)
        added = len(positions)
        if not added:
            return
        gather: Callable[[Sequence[Any]], Iterable[Any]]
        if added == 1:  # itemgetter of one position returns the item, not a tuple
            (at,) = positions
            gather = lambda column: (column[at],)  # noqa: E731
        else:
            gather = itemgetter(*positions)
        self.ms.extend(gather(other.ms))
        self.profile.extend(gather(other.profile))
        self.sig.extend(gather(other.sig))
        self.profile_bytes = _extended(
            self.profile_bytes, gather(other.profile_bytes or other.profile)
        )
        self.sig_bytes = _extended(self.sig_bytes, gather(other.sig_bytes or other.sig))
        for key, column in self.ratings.items():
            values = other.ratings.get(key)
            column.extend(repeat(0.0, added) if values is None else gather(values))

    def truncate(self, from_ms: int) -> None:
        """Drop every row with ``created_at_ms >= from_ms`` (a suffix, since rows are
        in time order). ``O(log m + dropped)`` per column."""
        cut = bisect_left(self.ms, from_ms)
        for column in self._all_columns():
            del column[cut:]

    def _all_columns(self) -> list[Any]:
        mirrors = [m for m in (self.sig_bytes, self.profile_bytes) if m is not None]
        return [self.ms, self.profile, self.sig, *self.ratings.values(), *mirrors]

    # --- reading ----------------------------------------------------------------------

    def span(self, after_ms: int | None, before_ms: int | None) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the rows with ``after_ms <= ms < before_ms``.
        Two bisections: ``O(log m)``."""
        lo = 0 if after_ms is None else bisect_left(self.ms, after_ms)
        hi = len(self.ms) if before_ms is None else bisect_left(self.ms, before_ms)
        return lo, max(lo, hi)

    def take(self, lo: int, hi: int, keep: Sequence[Any] | None = None) -> Columns:
        """A new :class:`Columns` of rows ``[lo, hi)`` — only those whose ``keep``
        entry (indexed from ``lo``) is truthy when ``keep`` is given.
        ``O((hi - lo) * (1 + r))``: a slice copy or one ``compress`` per column."""
        out = Columns()
        sig_bytes, profile_bytes = self.sig_bytes, self.profile_bytes
        if keep is None:
            out.ms = self.ms[lo:hi]
            out.profile = self.profile[lo:hi]
            out.sig = self.sig[lo:hi]
            out.ratings = {key: column[lo:hi] for key, column in self.ratings.items()}
            out.sig_bytes = None if sig_bytes is None else sig_bytes[lo:hi]
            out.profile_bytes = None if profile_bytes is None else profile_bytes[lo:hi]
        else:
            out.ms = list(compress(self.ms[lo:hi], keep))
            out.profile = array(CODE_TYPE, compress(self.profile[lo:hi], keep))
            out.sig = array(CODE_TYPE, compress(self.sig[lo:hi], keep))
            out.ratings = {
                key: list(compress(column[lo:hi], keep)) for key, column in self.ratings.items()
            }
            out.sig_bytes = (
                None if sig_bytes is None else bytearray(compress(sig_bytes[lo:hi], keep))
            )
            out.profile_bytes = (
                None if profile_bytes is None else bytearray(compress(profile_bytes[lo:hi], keep))
            )
        return out

    def check(self, signatures: Codebook[Signature] | None = None) -> None:
        """Raise ``AssertionError`` unless the columns are consistent. ``O(m r)``.

        With ``signatures``, also that a row lacking a key holds ``0.0`` for it.
        """
        size = len(self.ms)
        if any(len(column) != size for column in self._all_columns()):
            raise AssertionError("columns of different lengths")
        if any(a > b for a, b in pairwise(self.ms)):
            raise AssertionError("ms column out of order")
        for mirror, codes in ((self.sig_bytes, self.sig), (self.profile_bytes, self.profile)):
            if mirror is not None and list(mirror) != list(codes):
                raise AssertionError("a byte mirror differs from its codes")
        if signatures is None:
            return
        for key, column in self.ratings.items():
            for code, value in zip(self.sig, column, strict=True):
                if key not in signatures.values[code].keys and value != 0.0:
                    raise AssertionError(f"rating column {key!r} has a value for a row without it")


_ZERO = (0.0,)


def _values_for(
    key: str,
    distinct: set[tuple[str, ...]],
    key_tuples: list[tuple[str, ...]],
    value_tuples: list[tuple[float, ...]],
) -> Iterator[float]:
    """Each row's value for ``key``, ``0.0`` where its keys lack it, by C-level
    passes: per row, pick its values tuple or ``(0.0,)`` (decided once per distinct
    keys tuple), then the key's position in it."""
    position = {keys: keys.index(key) if key in keys else 0 for keys in distinct}
    missing = {keys: key not in keys for keys in distinct}
    sources = map(getitem, zip(value_tuples, repeat(_ZERO)), map(missing.__getitem__, key_tuples))
    return map(getitem, sources, map(position.__getitem__, key_tuples))


def _signature(pair: tuple[tuple[str, ...], tuple[str, ...]]) -> Signature:
    tags, keys = pair
    return Signature(tuple(sorted(tags)), tuple(sorted(keys)), bool(tags or keys))


def new_signatures() -> Codebook[Signature]:
    """An empty codebook for ``(tags, rating keys)`` pairs, decoded to
    :class:`Signature`."""
    return Codebook(_signature)


__all__ = [
    "PROFILE_FIELDS",
    "Codebook",
    "Columns",
    "Signature",
    "new_signatures",
]
