"""Column storage of the aggregate fields (``refengine.fast.columns``)."""

from __future__ import annotations

from typing import Any

import pytest

from refengine.fast.columns import (
    PROFILE_FIELDS,
    Codebook,
    Columns,
    Signature,
    new_signatures,
)
from refengine.rows import FeedbackRow
from strategies import scorer_row as stored_scorer_row


def build_columns(
    rows: list[FeedbackRow],
    profiles: Codebook[tuple[str, ...]],
    signatures: Codebook[Signature],
) -> Columns:
    """A new Columns holding ``rows``, as the aggregate index builds its master."""
    columns = Columns()
    columns.extend_rows(rows, profiles, signatures)
    return columns


def scorer_row(ms: int, tags: tuple[str, ...] = (), **ratings: float) -> FeedbackRow:
    return stored_scorer_row(ms, tags=tags, ratings=ratings)


def decoded(columns: Columns, signatures: Codebook[Signature]) -> list[tuple[Any, ...]]:
    """Each row as (ms, signature, ratings) — what the columns say about it."""
    ratings = [
        {key: columns.ratings[key][i] for key in signatures.values[code].keys}
        for i, code in enumerate(columns.sig)
    ]
    return [
        (ms, signatures.values[s], r)
        for ms, s, r in zip(columns.ms, columns.sig, ratings, strict=True)
    ]


def expected(rows: list[FeedbackRow]) -> list[tuple[Any, ...]]:
    return [
        (
            r.created_at_ms,
            Signature(
                tuple(sorted(r.scorer_tags)),
                tuple(sorted(r.scorer_ratings)),
                bool(r.scorer_tags or r.scorer_ratings),
            ),
            dict(r.scorer_ratings),
        )
        for r in rows
    ]


ROWS = [
    scorer_row(1, ("b", "a"), _rating_=0.5),
    scorer_row(2),
    scorer_row(2, ("a", "b"), confidence=0.25, _rating_=-0.0),
    scorer_row(5, ("a", "a")),
    scorer_row(9, (), x=1.5),
]


def test_codebook_shares_codes_between_values_with_one_canonical_form() -> None:
    signatures = new_signatures()
    codes = signatures.encode_all([(("b", "a"), ()), (("a", "b"), ()), ((), ()), (("a", "b"), ())])
    assert codes[0] == codes[1] == codes[3] != codes[2]
    assert signatures.values[codes[0]] == Signature(("a", "b"), (), True)
    assert signatures.values[codes[2]] == Signature((), (), False)
    plain: Codebook[str] = Codebook()
    x, y, x_again = plain.encode_all(["x", "y", "x"])
    assert x == x_again != y
    z, x_later = plain.encode_all(["z", "x"])
    assert x_later == x  # codes never move
    assert [plain.values[c] for c in (x, y, z)] == ["x", "y", "z"]
    assert len(plain) == 3


def test_columns_hold_every_row_in_order() -> None:
    profiles: Codebook[tuple[str, ...]] = Codebook()
    signatures = new_signatures()
    columns = build_columns(ROWS, profiles, signatures)
    columns.check(signatures)
    assert decoded(columns, signatures) == expected(ROWS)
    assert profiles.values[columns.profile[0]] == tuple(getattr(ROWS[0], f) for f in PROFILE_FIELDS)
    assert len(set(columns.profile)) == 1


def test_a_key_first_seen_later_gets_zeros_for_the_rows_before() -> None:
    wide = {f"k{i:02d}": float(i) for i in range(20)}
    rows = [scorer_row(1, **wide), scorer_row(2, k03=7.0), scorer_row(3)]
    signatures = new_signatures()
    columns = build_columns(rows[:1], Codebook(), signatures)
    columns.extend_rows(rows[1:], Codebook(), signatures)
    columns.extend(build_columns([scorer_row(4, new=2.0)], Codebook(), signatures))
    columns.check(signatures)
    assert decoded(columns, signatures) == expected([*rows, scorer_row(4, new=2.0)])
    assert columns.ratings["new"] == [0.0, 0.0, 0.0, 2.0]
    assert columns.ratings["k03"] == [3.0, 7.0, 0.0, 0.0]


@pytest.mark.parametrize("split", range(len(ROWS) + 1))
def test_extend_in_two_runs_equals_one(split: int) -> None:
    profiles: Codebook[tuple[str, ...]] = Codebook()
    signatures = new_signatures()
    whole = build_columns(ROWS, profiles, signatures)
    parts = build_columns(ROWS[:split], profiles, signatures)
    parts.extend(build_columns(ROWS[split:], profiles, signatures))
    parts.check()
    assert decoded(parts, signatures) == decoded(whole, signatures)


def test_take_copies_a_range_or_the_kept_rows() -> None:
    signatures = new_signatures()
    columns = build_columns(ROWS, Codebook(), signatures)
    assert columns.span(2, 6) == (1, 4)
    assert columns.span(None, None) == (0, 5)
    assert columns.span(6, 2) == (4, 4)  # an empty window, never negative
    middle = columns.take(1, 4)
    middle.check()
    assert decoded(middle, signatures) == expected(ROWS[1:4])
    kept = columns.take(0, 5, [1, 0, 0, 1, 1])
    kept.check()
    assert decoded(kept, signatures) == expected([ROWS[0], ROWS[3], ROWS[4]])
    assert len(columns.take(0, 5, [0] * 5)) == 0
    middle.ms.append(99)  # a copy: the source is untouched
    assert len(columns) == 5


@pytest.mark.parametrize("positions", [[], [2], [0, 4], [1, 2, 3], [0, 1, 2, 3, 4]])
def test_extend_at_appends_the_rows_at_those_positions(positions: list[int]) -> None:
    signatures = new_signatures()
    source = build_columns(ROWS, Codebook(), signatures)
    first = scorer_row(0, only_here=1.5)  # a key the source lacks: zeros for its rows
    target = build_columns([first], Codebook(), signatures)
    target.extend_at(source, positions)
    target.check(signatures)
    assert decoded(target, signatures) == expected([first, *(ROWS[i] for i in positions)])
    assert target.ratings["only_here"] == [1.5] + [0.0] * len(positions)


@pytest.mark.parametrize(("from_ms", "left"), [(0, 0), (2, 1), (3, 3), (9, 4), (10, 5)])
def test_truncate_drops_a_time_suffix(from_ms: int, left: int) -> None:
    signatures = new_signatures()
    columns = build_columns(ROWS, Codebook(), signatures)
    columns.truncate(from_ms)
    columns.check()
    assert decoded(columns, signatures) == expected(ROWS[:left])


def test_check_catches_broken_columns() -> None:
    columns = build_columns(ROWS, Codebook(), new_signatures())
    columns.ms.reverse()
    with pytest.raises(AssertionError, match="out of order"):
        columns.check()
    signatures = new_signatures()
    columns = build_columns(ROWS, Codebook(), signatures)
    columns.check(signatures)
    columns.ratings["_rating_"][1] = 0.5  # row 1 has no _rating_
    with pytest.raises(AssertionError, match="has a value for a row without it"):
        columns.check(signatures)
    columns = build_columns(ROWS, Codebook(), new_signatures())
    del columns.sig[0]
    with pytest.raises(AssertionError, match="lengths"):
        columns.check()


def test_the_byte_mirrors_follow_the_codes_through_every_change() -> None:
    profiles: Codebook[tuple[str, ...]] = Codebook()
    signatures = new_signatures()
    columns = build_columns(ROWS, profiles, signatures)
    other = build_columns(ROWS[1:3], profiles, signatures)
    columns.extend(other)
    columns.extend_at(other, [0, 1])
    for mirror, codes in (
        (columns.sig_bytes, columns.sig),
        (columns.profile_bytes, columns.profile),
    ):
        assert mirror is not None
        assert list(mirror) == list(codes)
    kept = columns.take(0, len(columns), [i % 2 for i in range(len(columns))])
    assert kept.sig_bytes is not None and list(kept.sig_bytes) == list(kept.sig)
    columns.truncate(5)
    assert columns.sig_bytes is not None and list(columns.sig_bytes) == list(columns.sig)
    columns.check(signatures)


def test_a_code_past_255_drops_the_mirror_for_good() -> None:
    signatures = new_signatures()
    many = [scorer_row(i, (f"t{i}",)) for i in range(300)]  # 300 signatures
    columns = build_columns(many, Codebook(), signatures)
    assert columns.sig_bytes is None
    assert columns.profile_bytes is not None  # one profile: its mirror stays
    columns.check(signatures)  # a missing mirror is consistent
    assert columns.take(0, 10).sig_bytes is None
    fits = build_columns(many[:10], Codebook(), new_signatures())
    fits.extend(columns)
    assert fits.sig_bytes is None and len(fits.sig) == 310


def test_check_catches_a_mirror_that_differs_from_its_codes() -> None:
    columns = build_columns(ROWS, Codebook(), new_signatures())
    assert columns.sig_bytes is not None
    columns.sig_bytes[0] ^= 1
    with pytest.raises(AssertionError, match="byte mirror"):
        columns.check()
