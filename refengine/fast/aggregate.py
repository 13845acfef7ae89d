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

1. **Filters** are compiled once per request (:func:`compile_filters`). The string
   filters are decided once per distinct profile (with the reference's own
   predicates) and the tags filter once per distinct signature; a row then costs
   one set lookup in a ``map``. The rating bounds are a signature lookup (does the
   row have ``_rating_``?) and two comparisons per row in ``map``. A partition whose
   rows all pass is not copied again.
2. **Buckets**: rows are in time order, so bucket edges are found by bisection on
   the time column — no per-row arithmetic.
3. **Cells**: each (bucket, group) cell is a contiguous slice of one partition.
   Its counts are the integer sum of its rows' packed signature vectors (one
   field per tag and rating key, :class:`_Packing`; a large cell counts its
   signature codes with a ``Counter`` first and adds one product per code), then
   unpacked; each rating key's sum is one left-to-right sum over the slice of its
   value column, in store order. The bucket models are built without validation
   (:func:`trusted_bucket`): every value is already of its field's type.

Runtime complexity, for ``k`` window rows in ``g`` groups making ``c`` cells, with
``s`` distinct signatures per cell, ``f`` distinct tags and rating keys per group
(packed while ``f <=`` :data:`MAX_PACKED_FIELDS`, one machine word per field) and
``r`` rating keys: ``O(k (r + f/64) + c (s f/64 + f) + c log c)`` once the index is
current (see :mod:`refengine.fast.aggregate_index` for keeping it so); past that
many fields, ``O(k r + c s t + c log c)`` with ``t`` tags and keys per signature.
Measured figures: ``benchmarks/bench_aggregate.py`` and ``benchmarks/bench_chdb.py``.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial, reduce
from itertools import repeat
from operator import add, and_, ge, itemgetter, le, mul
from typing import Any, NamedTuple

from ..models import FeedbackAggregateBucket, FeedbackAggregateRes
from ..rows import STATUS_ORDER
from ..semantics.aggregate import RATING_KEY, AggregatePlan, id_matches, type_matches
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
    column: list[int], decide: Callable[[int], bool], memo: dict[int, bool]
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
"""Cells of a view are counted with packed vectors (see :class:`_Packing`) while its
signatures name at most this many distinct tags and rating keys in all; beyond it
(a hostile or unusual project) the per-signature loop of :func:`_loop_counts` is
cheaper, since a packed vector costs every cell a step per field."""

DIRECT_SUM_ROWS = 24
"""A cell of at most this many rows adds its rows' packed vectors directly; a larger
one counts its signature codes first (``Counter``) and adds one product per distinct
code. Measured: the two cross near 20–30 rows per cell with a dozen fields."""

_FIELD_BITS = 64  # a count never reaches 2**64: it counts objects held in memory
_FIELD_MASK = (1 << _FIELD_BITS) - 1

Counts = tuple[int, dict[str, int], dict[str, int]]
"""A cell's ``(scored_count, tag_counts, rating_counts)``, maps in ascending key order."""


class _Packing:
    """Per view, each signature's counts packed into one integer.

    Field 0 is "scored" (0 or 1), then one field per distinct tag (the tag's
    multiplicity in the signature), then one per distinct rating key (0 or 1), tags
    and keys each in ascending order, :data:`_FIELD_BITS` bits per field. A cell's
    counts are then the plain integer sum of its rows' vectors — exact, since no
    field can carry into the next — unpacked once per cell.
    """

    __slots__ = ("_unpacked", "key_fields", "tag_fields", "vectors")

    def __init__(self, codes: Iterable[int], signatures: Sequence[Signature]) -> None:
        sigs = {code: signatures[code] for code in codes}
        tags = sorted({tag for sig in sigs.values() for tag in sig.tags})
        keys = sorted({key for sig in sigs.values() for key in sig.keys})
        tag_shift = {tag: (1 + i) * _FIELD_BITS for i, tag in enumerate(tags)}
        key_shift = {key: (1 + len(tags) + i) * _FIELD_BITS for i, key in enumerate(keys)}
        self.tag_fields = list(tag_shift.items())
        self.key_fields = list(key_shift.items())
        self.vectors: dict[int, int] = {}
        # A packed total -> its counts: cells that count alike (many cells of a
        # small window are one or two rows of a common signature) unpack once.
        self._unpacked: dict[int, Counts] = {}
        for code, sig in sigs.items():
            vector = int(sig.scored)
            for tag in sig.tags:  # a repeated tag adds twice
                vector += 1 << tag_shift[tag]
            for key in sig.keys:
                vector += 1 << key_shift[key]
            self.vectors[code] = vector

    @staticmethod
    def fields(codes: Iterable[int], signatures: Sequence[Signature]) -> int:
        """How many tag and key fields a packing of ``codes`` would have."""
        names: set[tuple[bool, str]] = set()
        for code in codes:
            sig = signatures[code]
            names.update((True, tag) for tag in sig.tags)
            names.update((False, key) for key in sig.keys)
        return len(names)

    def counts(self, sig: list[int], lo: int, hi: int) -> Counts:
        """The counts of rows ``[lo, hi)`` of the signature column ``sig``."""
        vectors = self.vectors
        if hi - lo <= DIRECT_SUM_ROWS:
            total = sum(map(vectors.__getitem__, sig[lo:hi]))
        else:
            per_code = Counter(sig[lo:hi])
            total = sum(map(mul, per_code.values(), map(vectors.__getitem__, per_code)))
        scored, tag_counts, rating_counts = self.unpacked(total)
        return scored, tag_counts.copy(), rating_counts.copy()  # fresh: each bucket's own

    def unpacked(self, total: int) -> Counts:
        """The counts a packed ``total`` holds, shared: copy the maps before handing
        them out."""
        unpacked = self._unpacked.get(total)
        if unpacked is None:
            unpacked = self._unpacked[total] = self._unpack(total)
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
        return total & _FIELD_MASK, tag_counts, rating_counts


def _loop_counts(signatures: Sequence[Signature], sig: list[int], lo: int, hi: int) -> Counts:
    """The same counts as :meth:`_Packing.counts`, one Python step per distinct
    signature of the cell and per tag and key it names."""
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
    return scored, dict(sorted(tag_counts.items())), dict(sorted(rating_counts.items()))


_ALL_FIELDS = set(FeedbackAggregateBucket.model_fields)
# Every bucket is given every field, so all share this one set: assigning a field
# later would add a name it already holds (pydantic adds to it, never removes).


def trusted_bucket(values: dict[str, Any]) -> FeedbackAggregateBucket:
    """A bucket model holding ``values`` (every field, already of its field's type:
    fresh dicts of ``str`` to ``int`` or ``float``, ``int`` counts) without
    validating them — what ``model_construct`` does, without its per-field loop."""
    bucket = FeedbackAggregateBucket.__new__(FeedbackAggregateBucket)
    object.__setattr__(bucket, "__dict__", values)
    object.__setattr__(bucket, "__pydantic_fields_set__", _ALL_FIELDS)
    object.__setattr__(bucket, "__pydantic_extra__", None)
    object.__setattr__(bucket, "__pydantic_private__", None)
    return bucket


def _packing_for(codes: set[int], signatures: Sequence[Signature]) -> _Packing | None:
    """A packing of ``codes``, or ``None`` past :data:`MAX_PACKED_FIELDS` fields."""
    if _Packing.fields(codes, signatures) <= MAX_PACKED_FIELDS:
        return _Packing(codes, signatures)
    return None


def _fold_cells(
    view: Span,
    width_ms: int | None,
    group: dict[str, str],
    signatures: Sequence[Signature],
    packing: _Packing | None,
    *,
    out: list[tuple[int, FeedbackAggregateBucket]],
) -> None:
    """Append to ``out`` the cells of one group's (filtered) window, as ``(bucket
    start or 0, bucket)``: one per non-empty time bucket, or one for the whole view
    when ``width_ms`` is ``None``.

    Per cell: its counts (``packing``, which packs every signature of the view;
    without one, a packing of the view's own signatures, or :func:`_loop_counts`
    for views with many distinct tags and keys) and, per rating key it counts, one
    left-to-right sum over a contiguous slice of that key's values (a lone row's
    value as it is). The loop is the fold's per-cell cost, so it is written out
    flat: bisection for the bucket edges, and the bucket models made as
    :func:`trusted_bucket` makes them.
    """
    columns, lo, end = view
    sig, ratings, ms = columns.sig, columns.ratings, columns.ms
    if packing is None:
        packing = _packing_for(set(sig[lo:end]), signatures)
    new, set_slot, fields_set = FeedbackAggregateBucket.__new__, object.__setattr__, _ALL_FIELDS
    append = out.append
    while True:
        if width_ms is None:
            start, hi = None, end
        else:
            if lo >= end:
                return
            start = ms[lo] // width_ms * width_ms
            hi = bisect_left(ms, start + width_ms, lo, end)
        if packing is None:
            scored, tag_counts, rating_counts = _loop_counts(signatures, sig, lo, hi)
        elif hi - lo == 1:  # the commonest cell of a small window: inlined
            unpacked = packing.unpacked(packing.vectors[sig[lo]])
            scored, tag_counts, rating_counts = unpacked[0], unpacked[1].copy(), unpacked[2].copy()
        else:
            scored, tag_counts, rating_counts = packing.counts(sig, lo, hi)
        rating_sums: dict[str, float] = {}
        for key in rating_counts:
            if hi - lo == 1:  # 0 + x is x, and a -0.0 is dropped below either way
                total = float(ratings[key][lo])
            else:
                total = float(_sequential_sum(ratings[key][lo:hi]))
            if total != 0.0:  # ClickHouse sumMap drops a key whose sum is exactly zero
                rating_sums[key] = total
        bucket = new(FeedbackAggregateBucket)
        set_slot(
            bucket,
            "__dict__",
            {
                "time_bucket_start_ms": start,
                "group": dict(group),
                "total_count": hi - lo,
                "scored_count": scored,
                "tag_counts": tag_counts,
                "rating_counts": rating_counts,
                "rating_sums": rating_sums,
            },
        )
        set_slot(bucket, "__pydantic_fields_set__", fields_set)
        set_slot(bucket, "__pydantic_extra__", None)
        set_slot(bucket, "__pydantic_private__", None)
        append((0 if start is None else start, bucket))
        if width_ms is None:
            return
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


def fold(p: AggregatePlan, snapshot: AggregateSnapshot) -> FeedbackAggregateRes:
    """The answer to ``p`` from ``snapshot``: the same as
    :func:`refengine.semantics.aggregate.fold` over the window's rows. Aggregate /
    Cost: see the module docstring for how, and for the runtime complexity."""
    filters = compile_filters(p)
    signatures = snapshot.signatures
    run = _FilterRun(filters, snapshot.profiles, signatures) if filters.active else None
    dims = list(p.group_by)
    order = _group_order(dims)
    width = p.width_ms
    groups = sorted(
        ((order(values), values, window) for values, window in _request_order(snapshot, dims)),
        key=itemgetter(0),
    )
    views = [(values, window if run is None else run.apply(window)) for _, values, window in groups]
    views = [(values, view) for values, view in views if view.lo < view.hi]
    # One packing for the whole request while the signatures of all its views fit:
    # built once, not once per group.
    codes = set().union(*(view.columns.sig[view.lo : view.hi] for _, view in views))
    shared = _packing_for(codes, signatures.values)
    cells: list[tuple[int, FeedbackAggregateBucket]] = []
    for values, view in views:
        group: dict[str, str] = dict(zip(dims, values, strict=True))
        _fold_cells(view, width, group, signatures.values, shared, out=cells)
    if not cells and width is None and not dims:  # no bucket, no group_by: one row always
        _fold_cells(Span(Columns(), 0, 0), None, {}, signatures.values, shared, out=cells)
    # By bucket start, then group values: the groups came in order and the sort is stable.
    cells.sort(key=itemgetter(0))
    return FeedbackAggregateRes.model_construct(
        time_bucket_seconds=p.time_bucket_seconds,
        after_ms=p.after_ms,
        before_ms=p.before_ms,
        buckets=[cell[1] for cell in cells],
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
]
