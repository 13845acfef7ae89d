"""The fast fold of ``POST /feedback/aggregate`` over the columnar index.

The rules are :mod:`refengine.semantics.aggregate`'s (spec/SEMANTICS.md,
"Aggregate"); this module answers the same :class:`AggregatePlan` from an
:class:`AggregateSnapshot` instead of a list of rows, and must give the same answer
(property tests and the case catalogue run both).

The snapshot: the store keeps an index (:mod:`refengine.fast.aggregate_index`) with
the rows as columns — time, a code for the row's string dimensions (its
*profile*), a code for its tags and rating keys (its *signature*), and per rating
key the values — split into one partition per group_by value. The engine takes a
span of each partition's window (:class:`Span`), read in place under the
index's lock, not copied.

Nothing of the window is copied: the fold reads the partitions' columns, and
their byte mirrors (``sig_bytes``, ``profile_bytes``: one byte per row while every
code is below 256, :mod:`refengine.fast.columns`), in place.

1. **Filters** are compiled once per request (:func:`compile_filters`) and decided
   once per distinct code, with the reference's own predicates. The tags filter,
   and the presence of ``_rating_`` that a rating bound requires, are decided per
   *signature*: a failing signature's packed vector and field tables are zero
   (:class:`_Packing`), so its rows count nowhere, without a per-row step. The
   string filters (per *profile*: one ``bytes.translate`` of the profile bytes, or
   a lookup per row past 255 profiles) and the rating bounds (two comparisons per
   row in ``map``) make one 0/1 byte mask per view (:func:`_row_mask`), ANDed as
   integers. A view whose rows all fail is skipped; a cell whose rows all fail is
   not emitted (the reference makes a cell only for a row that passes).
2. **Buckets**: rows are in time order, so bucket edges are found by bisection on
   the time column — no per-row arithmetic (a lone row's cell not even that).
3. **Cells**: each (bucket, group) cell is a contiguous slice of one partition.
   A small cell's counts are the integer sum of its rows' packed signature vectors
   (one field per tag and rating key, and one for the passing rows), unpacked once
   per distinct total and remembered with the packing, which is kept with the
   signature codebook between queries. A larger cell's counts are one
   ``bytes.count`` per field over its positions in per-view columns that
   ``translate`` each row's code to its multiplicity of that field (mask ANDed
   in): C-level, no Python object per row. Each rating key's sum is one
   left-to-right sum over the cell's slice of its value column, in store order,
   ``compress``-ed by the cell's passing rows when some fail and carry the key
   (a row without the key holds ``0.0``, which changes no sum). The bucket models
   are built without validation, one C-level pass per pydantic slot
   (:func:`trusted_buckets`): every value is already of its field's type.

A view whose codes do not fit in bytes (a project past 255 signatures), or a
request whose passing signatures name more than :data:`MAX_PACKED_FIELDS` tags and
keys or repeat a tag 256 times in a row, takes the previous way: its passing rows
are copied (:meth:`_FilterRun.apply`) and folded as lists
(:func:`_fold_list_cells`).

Runtime complexity, for ``k`` window rows in ``v`` views making ``c`` cells, with
``f`` distinct tags and rating keys named by the passing signatures (at most
:data:`MAX_PACKED_FIELDS`), ``r`` rating keys, and ``w`` the bytes a C-level byte
pass handles per Python step: ``O(k r + k f / w + c f + c log c)`` once the index
is current and the packing kept (see :mod:`refengine.fast.aggregate_index` for
keeping the index so), plus ``O(S f)`` to make a packing for the ``S`` signatures
of the codebook, and ``O(k)`` per-row steps for a profile filter past 255
profiles or a rating bound. Past the byte limits, ``O(k r + c s t + c log c)``
with ``s`` distinct signatures per cell and ``t`` tags and keys per signature,
plus the ``O(k r)`` copy of the passing rows.
Measured figures: ``benchmarks/bench_aggregate.py`` and ``benchmarks/bench_chdb.py``.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial, reduce
from itertools import compress, repeat
from operator import add, and_, ge, itemgetter, le, mul
from typing import Any, NamedTuple

from ..models import FeedbackAggregateBucket, FeedbackAggregateRes
from ..rows import STATUS_ORDER
from ..semantics.aggregate import RATING_KEY, AggregatePlan, id_matches, type_matches
from . import lru
from .columns import PROFILE_FIELDS, Codebook, Columns, Signature

if sys.version_info < (3, 12):
    _sequential_sum: Callable[[Iterable[float]], float] = sum
else:  # from 3.12 ``sum`` compensates float rounding; keep plain left-to-right addition

    def _sequential_sum(values: Iterable[float]) -> float:
        return float(reduce(add, values, 0.0))


# --- filters -------------------------------------------------------------------------


def _id_test(wanted: tuple[str, ...], value: str) -> bool:
    return id_matches(value, wanted)


def _type_test(wanted: tuple[str, ...], value: str) -> bool:
    return type_matches(value, wanted)


class Span(NamedTuple):
    """Rows ``[lo, hi)`` of ``columns``: a group's window, read in place."""

    columns: Columns
    lo: int
    hi: int


@dataclass(frozen=True)
class Filters:
    """A request's filters, compiled. ``profile`` tests a row's profile tuple
    (:data:`refengine.fast.columns.PROFILE_FIELDS`), ``tags`` is the any-of tag set,
    ``rating`` the inclusive ``_rating_`` bounds; ``None`` is no filter."""

    profile: Callable[[tuple[str, ...]], bool] | None
    tags: frozenset[str] | None
    rating: tuple[float, float] | None

    @property
    def active(self) -> bool:
        """True when any filter is set."""
        return self.profile is not None or self.tags is not None or self.rating is not None


def compile_filters(req: AggregatePlan) -> Filters:
    """The plan's filters, compiled once: the string filters as one test of a
    profile tuple made of the reference's predicates
    (:func:`refengine.semantics.aggregate.passes_filters` states the rules)."""
    tests: list[tuple[int, Callable[[str], bool]]] = []

    def on(field: str, match: Callable[[str], bool]) -> None:
        tests.append((PROFILE_FIELDS.index(field), match))

    if req.span_agent_names:
        on("span_agent_name", frozenset(req.span_agent_names).__contains__)
    if req.span_types:
        on("span_type", frozenset(req.span_types).__contains__)
    if req.scorer_ids:
        on("scorer_id", partial(_id_test, req.scorer_ids))
    if req.monitor_ids:
        on("monitor_id", partial(_id_test, req.monitor_ids))
    if req.feedback_types:
        on("feedback_type", partial(_type_test, req.feedback_types))

    profile: Callable[[tuple[str, ...]], bool] | None = None
    if tests:

        def profile(values: tuple[str, ...]) -> bool:
            return all(match(values[at]) for at, match in tests)

    rating = None
    if req.rating_min is not None or req.rating_max is not None:
        low = float("-inf") if req.rating_min is None else req.rating_min
        high = float("inf") if req.rating_max is None else req.rating_max
        rating = (low, high)
    return Filters(profile, frozenset(req.tags) if req.tags else None, rating)


def _accepted(
    column: Sequence[int], decide: Callable[[int], bool], memo: dict[int, bool]
) -> Iterable[bool] | None:
    """A keep-mask over ``column`` (codes) from a per-code decision, or ``None`` when
    every row passes. ``decide`` runs once per distinct code per request."""
    distinct = set(column)
    for code in distinct.difference(memo):
        memo[code] = decide(code)
    accepted = {code for code in distinct if memo[code]}
    if len(accepted) == len(distinct):
        return None
    return map(accepted.__contains__, column)


class _FilterRun:
    """Applies compiled :class:`Filters` to the partitions of one request."""

    def __init__(
        self,
        filters: Filters,
        profiles: Codebook[tuple[str, ...]],
        signatures: Codebook[Signature],
    ) -> None:
        self.filters = filters
        self.profiles = profiles.values
        self.signatures = signatures.values
        self.profile_memo: dict[int, bool] = {}
        self.sig_memo: dict[int, bool] = {}

    def apply(self, view: Span) -> Span:
        """The rows of ``view`` that pass every filter (``view`` itself if all do,
        else a copy of those rows). ``O(hi - lo)``, all C-level but one step per
        distinct code."""
        columns, lo, hi = view
        filters = self.filters
        masks: list[Iterable[Any]] = []
        if filters.profile is not None:
            profiles, test = self.profiles, filters.profile
            mask = _accepted(columns.profile[lo:hi], lambda c: test(profiles[c]), self.profile_memo)
            if mask is not None:
                masks.append(mask)
        wanted, rating = filters.tags, filters.rating
        if rating is not None and RATING_KEY not in columns.ratings:
            return Span(Columns(), 0, 0)  # no row in the view has _rating_: none can pass
        if wanted is not None or rating is not None:
            # One decision per signature code: a wanted tag, and a _rating_ key.
            signatures = self.signatures

            def signature_passes(code: int) -> bool:
                sig = signatures[code]
                return (wanted is None or not wanted.isdisjoint(sig.tags)) and (
                    rating is None or RATING_KEY in sig.keys
                )

            mask = _accepted(columns.sig[lo:hi], signature_passes, self.sig_memo)
            if mask is not None:
                masks.append(mask)
        if rating is not None:
            values = columns.ratings[RATING_KEY][lo:hi]
            masks.append(map(le, repeat(rating[0]), values))
            masks.append(map(ge, repeat(rating[1]), values))
        if not masks:
            return view
        keep = list(reduce(lambda a, b: map(and_, a, b), masks))
        kept = columns.take(lo, hi, keep)
        return Span(kept, 0, len(kept))


# --- folding -------------------------------------------------------------------------


MAX_PACKED_FIELDS = 64
"""A request's cells are counted with packed vectors (see :class:`_Packing`) while the
passing signatures of its views name at most this many distinct tags and rating
keys in all; beyond it (a hostile or unusual project) the per-signature loop of
:func:`_loop_counts` is cheaper, since a packed vector costs every cell a step per
field."""

DIRECT_SUM_ROWS = 24
"""A cell of at most this many rows adds its rows' packed vectors directly; a larger
one counts each field over the view's translated byte columns
(:meth:`_Packing.field_views`: a few ``bytes.count`` per field, one
``translate`` per field and view), or, folded as lists, counts its codes first
(``Counter``) and adds one product per distinct code. Estimated on this VM: a
packed vector costs ~40 ns per row plus ~2 µs to unpack a new total, a field
~0.2 µs per cell, so the two cross near 20–30 rows per cell with a dozen
fields."""

_FIELD_BITS = 64  # a count never reaches 2**64: it counts objects held in memory
_FIELD_MASK = (1 << _FIELD_BITS) - 1
_MEMO_LIMIT = 8  # packings kept per codebook, between queries
_UNPACKED_LIMIT = 1024  # distinct packed totals a packing remembers the counts of (~0.5 KiB each)

Counts = tuple[int, int, dict[str, int], dict[str, int]]
"""A cell's ``(total_count, scored_count, tag_counts, rating_counts)``, maps in
ascending key order."""

_FF = bytes([0] + [255] * 255)  # translate a 0/1 mask to 0/255, for an AND with counts


class _FieldViews(NamedTuple):
    """One view's byte columns for counting its larger cells, each one byte per
    row of the view: ``passing`` (1 for a passing row; ``None``: every row
    passes), ``unscored`` (1 for a passing row that is not scored; ``None``:
    none), and per tag and per rating key of the packing that occurs in the view,
    the passing rows' multiplicity of it, with the distinct multiplicities. A
    cell's count of a field is then one ``count`` per multiplicity over its
    positions: C-level, no Python step per row."""

    passing: bytes | bytearray | None
    unscored: bytes | bytearray | None
    tags: list[tuple[str, bytes | bytearray, tuple[int, ...]]]
    keys: list[tuple[str, bytes | bytearray, tuple[int, ...]]]


def _table(weights: dict[int, int]) -> tuple[bytes, tuple[int, ...]]:
    """A ``bytes.translate`` table from codes (below 256) to their multiplicity
    (below 256), and the distinct multiplicities."""
    table = bytearray(256)
    for code, times in weights.items():
        table[code] = times
    return bytes(table), tuple(sorted(set(weights.values())))


class _Packing:
    """Per request, each signature's counts packed into one integer, with the
    request's per-signature filter decisions (tags, presence of ``_rating_``).

    Field 0 is "rows" (1 for a passing signature), field 1 "scored" (0 or 1),
    then one field per distinct tag of the passing signatures (the tag's
    multiplicity), then one per rating key (0 or 1), tags and keys each in
    ascending order, :data:`_FIELD_BITS` bits per field. A failing signature's
    vector is 0. A cell's counts are then the plain integer sum of its rows'
    vectors — exact, since no field can carry into the next — unpacked once per
    distinct total (and remembered: a packing is kept between queries).

    For larger cells over a byte column of codes the same counts come from the
    per-field ``translate`` tables (:meth:`field_views`; made only when every
    code and multiplicity fits in a byte, :attr:`in_bytes`); and the sums of a key
    that some failing signature carries (``masked_keys``) skip the failing rows
    through ``pass_table`` (``bytes.translate`` of the codes to 0 or 1).
    Runtime complexity: ``O(S (t + f))`` to make for ``S`` signatures naming ``t``
    tags and keys each and ``f`` in all.
    """

    __slots__ = (
        "failing",
        "fields",
        "in_bytes",
        "key_fields",
        "key_tables",
        "masked_keys",
        "pass_table",
        "remembered",
        "tag_fields",
        "tag_tables",
        "unscored_table",
        "vectors",
    )

    def __init__(
        self,
        codes: Iterable[int],
        signatures: Sequence[Signature],
        passes: Callable[[int], bool] | None = None,
    ) -> None:
        sigs = {code: signatures[code] for code in codes}
        passing = {code: sig for code, sig in sigs.items() if passes is None or passes(code)}
        failing = [code for code in sigs if code not in passing]
        tags = sorted({tag for sig in passing.values() for tag in sig.tags})
        keys = sorted({key for sig in passing.values() for key in sig.keys})
        self.fields = len(tags) + len(keys)
        tag_shift = {tag: (2 + i) * _FIELD_BITS for i, tag in enumerate(tags)}
        key_shift = {key: (2 + len(tags) + i) * _FIELD_BITS for i, key in enumerate(keys)}
        self.tag_fields = list(tag_shift.items())
        self.key_fields = list(key_shift.items())
        self.vectors: dict[int, int] = dict.fromkeys(failing, 0)
        # A packed total -> its counts: cells that count alike (many cells of a
        # small window are one or two rows of a common signature) unpack once.
        self.remembered: dict[int, Counts] = {}
        for code, sig in passing.items():
            vector = 1 + (int(sig.scored) << _FIELD_BITS)
            for tag in sig.tags:  # a repeated tag adds twice
                vector += 1 << tag_shift[tag]
            for key in sig.keys:
                vector += 1 << key_shift[key]
            self.vectors[code] = vector
        self.failing = bool(failing)
        self.masked_keys = frozenset(key for code in failing for key in sigs[code].keys)
        # The byte tables need codes and multiplicities that fit in a byte.
        self.in_bytes = all(code < 256 for code in sigs) and all(
            sig.tags.count(tag) < 256 for sig in passing.values() for tag in sig.tags
        )
        self.pass_table = self.unscored_table = b""
        self.tag_tables: list[tuple[str, bytes, tuple[int, ...]]] = []
        self.key_tables: list[tuple[str, bytes, tuple[int, ...]]] = []
        if self.in_bytes:
            self.pass_table = _table(dict.fromkeys(passing, 1))[0]
            unscored = [code for code, sig in passing.items() if not sig.scored]
            self.unscored_table = _table(dict.fromkeys(unscored, 1))[0] if unscored else b""
            for tag in tags:
                times = {c: n for c, sig in passing.items() if (n := sig.tags.count(tag))}
                self.tag_tables.append((tag, *_table(times)))
            for key in keys:
                having = [c for c, sig in passing.items() if key in sig.keys]
                self.key_tables.append((key, *_table(dict.fromkeys(having, 1))))

    def counts(self, sig: Sequence[int], lo: int, hi: int) -> Counts:
        """The counts of the passing rows of ``[lo, hi)`` of the signature column
        ``sig``: the maps are fresh, the caller's to keep."""
        vectors = self.vectors
        if hi - lo <= DIRECT_SUM_ROWS:
            total = sum(map(vectors.__getitem__, sig[lo:hi]))
        else:
            per_code = Counter(sig[lo:hi])
            total = sum(map(mul, per_code.values(), map(vectors.__getitem__, per_code)))
        rows, scored, tag_counts, rating_counts = self.unpacked(total)
        return rows, scored, tag_counts.copy(), rating_counts.copy()

    def field_views(
        self, sig_bytes: bytearray, lo: int, hi: int, mask: bytes | bytearray | None
    ) -> _FieldViews:
        """The :class:`_FieldViews` of rows ``[lo, hi)`` of ``sig_bytes`` (codes as
        bytes), with ``mask`` (a 0/1 byte per row, or ``None``) ANDed into every
        one. Requires :attr:`in_bytes`. ``O((hi - lo) f)`` for ``f`` fields, one
        ``translate`` each (C-level)."""
        run = sig_bytes[lo:hi]
        keep = None if mask is None else mask.translate(_FF)

        def view(table: bytes) -> bytes | bytearray:
            translated = run.translate(table)
            return translated if keep is None else _and(translated, keep)

        passing = mask if mask is not None else view(self.pass_table) if self.failing else None
        unscored = view(self.unscored_table) if self.unscored_table else None
        size = hi - lo
        tags = [(tag, v, w) for tag, t, w in self.tag_tables if (v := view(t)).count(0) < size]
        keys = [(key, v, w) for key, t, w in self.key_tables if (v := view(t)).count(0) < size]
        return _FieldViews(passing, unscored, tags, keys)

    def unpacked(self, total: int) -> Counts:
        """The counts a packed ``total`` holds, shared: copy the maps before handing
        them out."""
        unpacked = self.remembered.get(total)
        if unpacked is None:
            unpacked = self._unpack(total)
            if len(self.remembered) < _UNPACKED_LIMIT:
                self.remembered[total] = unpacked
        return unpacked

    def _unpack(self, total: int) -> Counts:
        tag_counts: dict[str, int] = {}
        rating_counts: dict[str, int] = {}
        if total:
            for tag, shift in self.tag_fields:
                count = (total >> shift) & _FIELD_MASK
                if count:
                    tag_counts[tag] = count
            for key, shift in self.key_fields:
                count = (total >> shift) & _FIELD_MASK
                if count:
                    rating_counts[key] = count
        return total & _FIELD_MASK, (total >> _FIELD_BITS) & _FIELD_MASK, tag_counts, rating_counts


def _loop_counts(signatures: Sequence[Signature], sig: Sequence[int], lo: int, hi: int) -> Counts:
    """The same counts as :meth:`_Packing.counts` without a filter, one Python step
    per distinct signature of the cell and per tag and key it names."""
    scored = 0
    tag_counts: dict[str, int] = {}
    rating_counts: dict[str, int] = {}
    for code, times in Counter(sig[lo:hi]).items():
        tags, keys, is_scored = signatures[code]
        if is_scored:
            scored += times
            for tag in tags:
                tag_counts[tag] = tag_counts.get(tag, 0) + times
            for key in keys:
                rating_counts[key] = rating_counts.get(key, 0) + times
    return (
        hi - lo,
        scored,
        dict(sorted(tag_counts.items())),
        dict(sorted(rating_counts.items())),
    )


# --- the bucket models -----------------------------------------------------------------

_ALL_FIELDS = set(FeedbackAggregateBucket.model_fields)
# Every bucket is given every field, so all share this one set: assigning a field
# later would add a name it already holds (pydantic adds to it, never removes).


def _slot(name: str) -> Any:
    """The descriptor that stores attribute ``name`` of a bucket model (a slot of
    pydantic's ``BaseModel``)."""
    for klass in FeedbackAggregateBucket.__mro__:
        descriptor = vars(klass).get(name)
        if descriptor is not None and hasattr(descriptor, "__set__"):
            return descriptor
    raise LookupError(name)  # pragma: no cover - pydantic keeps these four slots


_SET_DICT, _SET_FIELDS_SET, _SET_EXTRA, _SET_PRIVATE = (
    _slot(name).__set__
    for name in (
        "__dict__",
        "__pydantic_fields_set__",
        "__pydantic_extra__",
        "__pydantic_private__",
    )
)


def trusted_buckets(values: list[dict[str, Any]]) -> list[FeedbackAggregateBucket]:
    """Bucket models holding ``values`` (each dict has every field, already of its
    field's type — fresh dicts of ``str`` to ``int`` or ``float``, ``int`` counts —
    and becomes its model's own ``__dict__``) without validating them: what
    ``model_construct`` makes, without its per-field loop. Each slot of pydantic's
    model is set for all the models in one C-level pass (``map`` over the slot's
    descriptor), not one Python step per model. ``O(len(values))``."""
    count = len(values)
    buckets = list(map(FeedbackAggregateBucket.__new__, repeat(FeedbackAggregateBucket, count)))
    deque(map(_SET_DICT, buckets, values), 0)
    deque(map(_SET_FIELDS_SET, buckets, repeat(_ALL_FIELDS, count)), 0)
    deque(map(_SET_EXTRA, buckets, repeat(None, count)), 0)
    deque(map(_SET_PRIVATE, buckets, repeat(None, count)), 0)
    return buckets


def trusted_bucket(values: dict[str, Any]) -> FeedbackAggregateBucket:
    """One bucket model holding ``values``, as :func:`trusted_buckets` makes them."""
    return trusted_buckets([values])[0]


# --- one view's cells ------------------------------------------------------------------

_START = itemgetter("time_bucket_start_ms")

Cell = dict[str, Any]
"""A cell of the answer: its bucket model's values (:func:`trusted_buckets`)."""


def _cell_values(
    start: int | None,
    group: dict[str, str],
    counts: Counts,
    rating_sums: dict[str, float],
) -> dict[str, Any]:
    rows, scored, tag_counts, rating_counts = counts
    return {
        "time_bucket_start_ms": start,
        "group": group.copy(),
        "total_count": rows,
        "scored_count": scored,
        "tag_counts": tag_counts,
        "rating_counts": rating_counts,
        "rating_sums": rating_sums,
    }


def _fold_list_cells(
    view: Span,
    width_ms: int | None,
    group: dict[str, str],
    signatures: Sequence[Signature],
    *,
    out: list[Cell],
) -> None:
    """Append to ``out`` the cells of one group's window, already filtered (every
    row passes): one per non-empty time bucket, or one for the whole view when
    ``width_ms`` is ``None``. The fallback of :func:`_fold_view` for a view whose
    codes do not fit in bytes or that names too many fields: it reads the list
    columns only.

    Per cell: its counts (a packing of the view's own signatures, or
    :func:`_loop_counts` for views with many distinct tags and keys) and, per
    rating key it counts, one left-to-right sum over a contiguous slice of that
    key's values (a lone row's value as it is).
    """
    columns, lo, end = view
    sig, ratings, ms = columns.sig, columns.ratings, columns.ms
    packing: _Packing | None = _Packing(set(sig[lo:end]), signatures)
    if packing is not None and packing.fields > MAX_PACKED_FIELDS:
        packing = None
    append = out.append
    while lo < end:
        if width_ms is None:
            start, hi = None, end
        else:
            start = ms[lo] // width_ms * width_ms
            hi = bisect_left(ms, start + width_ms, lo, end)
        if packing is None:
            counts = _loop_counts(signatures, sig, lo, hi)
        else:
            counts = packing.counts(sig, lo, hi)
        rating_sums: dict[str, float] = {}
        for key in counts[3]:
            if hi - lo == 1:  # 0 + x is x, and a -0.0 is dropped below either way
                total = float(ratings[key][lo])
            else:
                total = float(_sequential_sum(ratings[key][lo:hi]))
            if total != 0.0:  # ClickHouse sumMap drops a key whose sum is exactly zero
                rating_sums[key] = total
        append(_cell_values(start, group, counts, rating_sums))
        lo = hi


def _and(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    """The row-by-row AND of two masks of 0 and 1 bytes of one length, by one
    integer AND (C-level, a machine word per 8 rows)."""
    return (int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _fold_view(
    view: Span,
    width_ms: int | None,
    group: dict[str, str],
    packing: _Packing,
    mask: bytes | bytearray | None,
    *,
    out: list[Cell],
) -> None:
    """Append to ``out`` the cells of one group's window with at least one passing
    row: one per such time bucket, or one for the whole view when ``width_ms`` is
    ``None``. The view is read in place, never copied: ``packing`` decides the
    per-signature filters (a failing row's vector is 0, and adds no row) and
    ``mask``, when given, is the per-row keep decision of the other filters (one
    byte per row of the view, 0 or 1, ANDed with the signature decision).

    Per cell: its counts (the packed vectors for a small cell, a ``count`` per
    field over :meth:`_Packing.field_views` for a larger one) and, per
    rating key it counts, one left-to-right sum over the cell's slice of that
    key's values in store order, skipping failing rows (``compress`` by the mask,
    or by the signature decision for a key some failing signature carries); a
    lone row's value as it is.
    """
    columns, lo, end = view
    sig_bytes, ratings, ms = columns.sig_bytes, columns.ratings, columns.ms
    assert sig_bytes is not None  # the caller checked: a view without bytes folds as lists
    first = lo
    pass_table, masked_keys, failing = packing.pass_table, packing.masked_keys, packing.failing
    unpacked, vectors = packing.unpacked, packing.vectors
    remembered = packing.remembered.get
    views: _FieldViews | None = None  # made for the view's first larger cell
    append = out.append
    while lo < end:
        if width_ms is None:
            start, hi = None, end
        else:
            start = ms[lo] // width_ms * width_ms
            hi = lo + 1
            if hi < end and ms[hi] < start + width_ms:  # a lone row needs no bisection
                hi = bisect_left(ms, start + width_ms, hi + 1, end)
        keep: bytes | bytearray | None = None  # which rows of the cell pass, when some do not
        if hi - lo == 1 and mask is None:  # the commonest cell of a small window
            total = vectors[sig_bytes[lo]]  # the byte mirror: no int to box
            counted = remembered(total) or unpacked(total)
            rows = counted[0]
            if rows == 0:
                lo = hi
                continue
            rating_counts = counted[3].copy()
            rating_sums: dict[str, float] = {}
            for key in rating_counts:
                # 0 + x is x, and a -0.0 is dropped below either way
                if value := float(ratings[key][lo]):
                    rating_sums[key] = value
            append(
                {
                    "time_bucket_start_ms": start,
                    "group": group.copy(),
                    "total_count": 1,
                    "scored_count": counted[1],
                    "tag_counts": counted[2].copy(),
                    "rating_counts": rating_counts,
                    "rating_sums": rating_sums,
                }
            )
            lo = hi
            continue
        if hi - lo <= DIRECT_SUM_ROWS:
            if mask is not None:
                keep = mask[lo - first : hi - first]
                kept = keep.count(1)
                if kept == hi - lo:
                    keep = None
                elif kept == 0:
                    lo = hi
                    continue
            if keep is None:
                total = sum(map(vectors.__getitem__, sig_bytes[lo:hi]))
            else:
                total = sum(map(vectors.__getitem__, compress(sig_bytes[lo:hi], keep)))
            counted = remembered(total) or unpacked(total)
            rows, scored = counted[0], counted[1]
            tag_counts, rating_counts = counted[2].copy(), counted[3].copy()
            if keep is None and failing and rows < hi - lo:
                keep = sig_bytes[lo:hi].translate(pass_table)
        else:
            if views is None:
                views = packing.field_views(sig_bytes, first, end, mask)
            a, b = lo - first, hi - first
            passing = views.passing
            rows = b - a if passing is None else passing.count(1, a, b)
            unscored = views.unscored
            scored = rows if unscored is None else rows - unscored.count(1, a, b)
            tag_counts = {}
            for tag, column, weights in views.tags:
                count = 0
                for times in weights:
                    count += times * column.count(times, a, b)
                if count:
                    tag_counts[tag] = count
            rating_counts = {}
            for key, column, _ in views.keys:
                if count := column.count(1, a, b):
                    rating_counts[key] = count
            if passing is not None and rows < b - a:
                keep = passing[a:b]
        if rows == 0:  # no passing row: the reference makes no cell
            lo = hi
            continue
        rating_sums = {}
        for key in rating_counts:
            values = ratings[key]
            if keep is not None and (mask is not None or key in masked_keys):
                total_sum = float(_sequential_sum(compress(values[lo:hi], keep)))
            else:
                total_sum = float(_sequential_sum(values[lo:hi]))
            if total_sum != 0.0:  # ClickHouse sumMap drops a key whose sum is exactly zero
                rating_sums[key] = total_sum
        # _cell_values written out: this loop runs once per cell of every answer,
        # and a call per cell is a measurable share of a small one.
        append(
            {
                "time_bucket_start_ms": start,
                "group": group.copy(),
                "total_count": rows,
                "scored_count": scored,
                "tag_counts": tag_counts,
                "rating_counts": rating_counts,
                "rating_sums": rating_sums,
            }
        )
        lo = hi


def _group_order(dims: Sequence[str]) -> Callable[[tuple[str, ...]], tuple[Any, ...]]:
    """Sort key for group values: code-point order, except that
    ``span_status_code`` sorts by enum value."""
    status_at = [i for i, d in enumerate(dims) if d == "span_status_code"]
    if not status_at:
        return tuple

    def order(values: tuple[str, ...]) -> tuple[Any, ...]:
        key: list[Any] = list(values)
        for i in status_at:
            key[i] = (STATUS_ORDER.get(values[i], len(STATUS_ORDER)), values[i])
        return tuple(key)

    return order


def _request_order(
    snapshot: AggregateSnapshot, dims: Sequence[str]
) -> Iterator[tuple[tuple[str, ...], Span]]:
    """Each view of ``snapshot`` with its group values in request order."""
    canonical = tuple(d for d in PROFILE_FIELDS if d in dims)
    to_request_order = [canonical.index(d) for d in dims]
    for key, window in snapshot.views:
        yield tuple(key[i] for i in to_request_order), window


def partition_dims(p: AggregatePlan) -> tuple[str, ...]:
    """The plan's ``group_by`` set in :data:`PROFILE_FIELDS` order: the partitioning
    whose views an :class:`AggregateSnapshot` holds."""
    return tuple(d for d in PROFILE_FIELDS if d in p.group_by)


class AggregateSnapshot(NamedTuple):
    """What the fast fold reads: per group of :func:`partition_dims`, ``(group
    values in that order, the Span of its window rows)``, groups without window
    rows left out; and the codebooks that decode the columns (only ever appended
    to, so codes read earlier stay valid). The spans are either copies or the
    index's own columns, read under its lock
    (:func:`refengine.fast.snapshots.aggregate_view`)."""

    views: Sequence[tuple[tuple[str, ...], Span]]
    profiles: Codebook[tuple[str, ...]]
    signatures: Codebook[Signature]


def _codes_in(column: bytearray, lo: int, hi: int, known: int) -> set[int]:
    """The distinct codes of ``column[lo:hi]`` (a byte column of codes below
    ``known``): a ``set`` of a short run, else one ``find`` per possible code (at
    memory speed, stopping at the first occurrence). ``O(min(hi - lo, known (1 +
    (hi - lo) / w)))`` for the ``w`` bytes a ``find`` scans per step."""
    if hi - lo <= 8 * known:
        return set(column[lo:hi])
    find = column.find
    return {code for code in range(min(known, 256)) if find(code, lo, hi) >= 0}


def _signature_test(
    filters: Filters, signatures: Sequence[Signature]
) -> Callable[[int], bool] | None:
    """The per-signature part of the filters (a wanted tag; a ``_rating_`` key when
    a rating bound is set) as a test of a code, or ``None`` when there is none."""
    wanted, rating = filters.tags, filters.rating
    if wanted is None and rating is None:
        return None

    def passes(code: int) -> bool:
        sig = signatures[code]
        return (wanted is None or not wanted.isdisjoint(sig.tags)) and (
            rating is None or RATING_KEY in sig.keys
        )

    return passes


def _packing(
    codes: Iterable[int] | None, signatures: Codebook[Signature], filters: Filters
) -> _Packing:
    """The packing of ``codes`` (``None``: every code of the codebook) under the
    per-signature filters, kept with the codebook between queries (its codes never
    change meaning): a repeated query finds its vectors, tables and unpacked
    totals made. ``O(1)`` when kept, for all codes; ``O(len(codes))`` to look up
    a set of them."""
    known = len(signatures)
    chosen = range(known) if codes is None else frozenset(codes)
    key = ("aggregate packing", known if codes is None else chosen, filters.tags, filters.rating)
    packing: _Packing = lru.use(
        signatures.memo,
        key,
        lambda: _Packing(chosen, signatures.values, _signature_test(filters, signatures.values)),
        _MEMO_LIMIT,
    )
    return packing


def _row_mask(view: Span, run: _FilterRun, packing: _Packing) -> bytes | bytearray | None:
    """The per-row keep decision over ``view`` of the filters that a signature does
    not decide — the string filters (per profile code) and the rating bounds —
    ANDed with the signature decision, one byte (0 or 1) per row; ``None`` when
    none of those filters is set. C-level passes over the view, a Python step per
    distinct profile."""
    columns, lo, hi = view
    filters = run.filters
    masks: list[bytes | bytearray] = []
    if filters.profile is not None:
        profile_bytes = columns.profile_bytes
        test, memo, profiles = filters.profile, run.profile_memo, run.profiles
        if profile_bytes is None:  # a profile code past 255: a lookup per row
            present = set(columns.profile[lo:hi])
        else:
            present = _codes_in(profile_bytes, lo, hi, len(profiles))
        for code in present.difference(memo):
            memo[code] = test(profiles[code])
        if not all(memo[code] for code in present):
            passing: bytes | bytearray
            if profile_bytes is None:
                passing = bytes(map(memo.__getitem__, columns.profile[lo:hi]))
            else:
                table = bytearray(256)
                for code in present:
                    table[code] = memo[code]
                passing = profile_bytes[lo:hi].translate(table)
            masks.append(passing)
    if filters.rating is not None:
        low, high = filters.rating
        values = columns.ratings[RATING_KEY][lo:hi]
        masks.append(bytes(map(and_, map(le, repeat(low), values), map(ge, repeat(high), values))))
    if not masks:
        return None
    if packing.failing:
        sig_bytes = columns.sig_bytes
        assert sig_bytes is not None
        masks.append(sig_bytes[lo:hi].translate(packing.pass_table))
    return reduce(_and, masks)


def fold(p: AggregatePlan, snapshot: AggregateSnapshot) -> FeedbackAggregateRes:
    """The answer to ``p`` from ``snapshot``: the same as
    :func:`refengine.semantics.aggregate.fold` over the window's rows. Aggregate /
    Cost: see the module docstring for how, and for the runtime complexity."""
    filters = compile_filters(p)
    signatures = snapshot.signatures
    run = _FilterRun(filters, snapshot.profiles, signatures)
    dims = list(p.group_by)
    order = _group_order(dims)
    width = p.width_ms
    groups = sorted(
        ((order(values), values, window) for values, window in _request_order(snapshot, dims)),
        key=itemgetter(0),
    )
    if filters.rating is not None:  # a view without a _rating_ column has no passing row
        groups = [g for g in groups if RATING_KEY in g[2].columns.ratings]
    # The views with byte columns share one packing (its fields the tags and keys of
    # their passing signatures); the others are filtered by copying and fold as lists.
    in_bytes = [window.columns.sig_bytes is not None for _, _, window in groups]
    # One packing of every code while the codebook is small (no scan of the views);
    # past that, or past MAX_PACKED_FIELDS fields, one of the views' own codes.
    shared = _packing(None, signatures, filters) if len(signatures) <= 256 else None
    if shared is None or shared.fields > MAX_PACKED_FIELDS:
        codes: set[int] = set()
        for (_, _, (columns, lo, hi)), fits in zip(groups, in_bytes, strict=True):
            if fits:
                assert columns.sig_bytes is not None
                codes |= _codes_in(columns.sig_bytes, lo, hi, len(signatures))
        shared = _packing(codes, signatures, filters) if codes else None
    if shared is not None and (shared.fields > MAX_PACKED_FIELDS or not shared.in_bytes):
        shared, in_bytes = None, [False] * len(groups)
    cells: list[Cell] = []
    for (_, values, window), fits in zip(groups, in_bytes, strict=True):
        group: dict[str, str] = dict(zip(dims, values, strict=True))
        if fits and shared is not None:
            mask = _row_mask(window, run, shared) if filters.active else None
            if mask is None or mask.count(1):
                _fold_view(window, width, group, shared, mask, out=cells)
        else:
            view = run.apply(window) if filters.active else window
            _fold_list_cells(view, width, group, signatures.values, out=cells)
    if not cells and width is None and not dims:  # no bucket, no group_by: one row always
        cells.append(_cell_values(None, {}, (0, 0, {}, {}), {}))
    if width is not None and len(groups) > 1:
        # By bucket start, then group values: the groups came in order, each view's
        # cells in bucket order, and the sort is stable. (Unbucketed, a view makes
        # at most one cell: group order is the order.)
        cells.sort(key=_START)
    return FeedbackAggregateRes.model_construct(
        time_bucket_seconds=p.time_bucket_seconds,
        after_ms=p.after_ms,
        before_ms=p.before_ms,
        buckets=trusted_buckets(cells),
    )


__all__ = [
    "DIRECT_SUM_ROWS",
    "MAX_PACKED_FIELDS",
    "AggregateSnapshot",
    "Filters",
    "Span",
    "compile_filters",
    "fold",
    "partition_dims",
    "trusted_bucket",
    "trusted_buckets",
]
