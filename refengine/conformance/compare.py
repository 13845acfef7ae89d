"""Path-addressed diffs of JSON values under declared comparison rules.

Rules (the ``compare`` object of a case file, see ``spec/cases.schema.json``):

* ``ignore`` — path patterns whose value is not compared (the key must still exist);
* ``timestamps`` — path patterns holding ISO 8601 strings, compared as instants
  (``2024-03-10T02:00:00-05:00`` equals ``2024-03-10T07:00:00Z``; naive means UTC);
* ``unordered`` — arrays compared without regard to order: ``{"path": P}`` treats the
  whole array as a multiset; ``{"path": P, "within": K}`` keeps runs of elements
  with equal key ``K`` in order (time buckets stay ordered) and compares the
  elements of each run as a multiset (rows within one bucket); an element whose
  ``K`` is null or missing is a run of its own (unbucketed rows stay ordered);
* ``exact`` — path patterns whose numbers must be equal exactly;
* ``tolerance`` — ``{"rel": r, "abs": a}`` for every other float. An integer in the
  expected value (a count) is always compared exactly. ``true``/``false`` are never
  numbers.

Path patterns: ``$`` the root, ``.key``, ``["key"]``, ``[3]``, ``[*]`` any index,
``.*`` any key, ``..key`` the key at any depth. Rendered paths look like
``$.buckets[3].p95_output_score`` (``$["a b"]`` for keys that are not identifiers).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

PathPart = str | int
Path = tuple[PathPart, ...]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
"""Stands for an absent key or element in a :class:`Difference`."""


@dataclass(frozen=True)
class Unordered:
    path: str
    within: str | None = None


@dataclass(frozen=True)
class CompareRules:
    ignore: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    unordered: tuple[Unordered, ...] = ()
    exact: tuple[str, ...] = ()
    rel: float = 1e-9
    abs: float = 1e-12

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CompareRules:
        if not data:
            return cls()
        tolerance = data.get("tolerance") or {}
        return cls(
            ignore=tuple(data.get("ignore", ())),
            timestamps=tuple(data.get("timestamps", ())),
            unordered=tuple(
                Unordered(u["path"], u.get("within")) for u in data.get("unordered", ())
            ),
            exact=tuple(data.get("exact", ())),
            rel=float(tolerance.get("rel", 1e-9)),
            abs=float(tolerance.get("abs", 1e-12)),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ignore:
            out["ignore"] = list(self.ignore)
        if self.timestamps:
            out["timestamps"] = list(self.timestamps)
        if self.unordered:
            out["unordered"] = [
                {"path": u.path} if u.within is None else {"path": u.path, "within": u.within}
                for u in self.unordered
            ]
        if self.exact:
            out["exact"] = list(self.exact)
        out["tolerance"] = {"rel": self.rel, "abs": self.abs}
        return out


def merge_rules(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> CompareRules:
    """File-level rules for an endpoint, with a step's ``compare`` keys replacing them."""
    merged = dict(base or {})
    merged.update(override or {})
    return CompareRules.from_json(merged)


@dataclass(frozen=True)
class Difference:
    """One difference: at ``path``, ``expected`` → ``actual`` (``MISSING`` if absent)."""

    path: str
    expected: Any
    actual: Any
    note: str = ""

    def render(self, limit: int = 160) -> str:
        want, got = _show(self.expected, limit), _show(self.actual, limit)
        text = f"{self.path}: expected {want} → actual {got}"
        return f"{text} ({self.note})" if self.note else text


def _show(value: Any, limit: int) -> str:
    if value is MISSING:
        return "<missing>"
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render_path(path: Sequence[PathPart]) -> str:
    """``("buckets", 3, "count")`` → ``$.buckets[3].count``."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


# --- path patterns --------------------------------------------------------------------

Token = tuple[str, Any]  # ("key", name|None) / ("index", n|None) / ("desc", name|None)
_TOKEN = re.compile(
    r"\.\.(?P<desc>[A-Za-z0-9_]+|\*)"
    r"|\.(?P<key>[A-Za-z0-9_]+|\*)"
    r"|\[(?P<index>\d+|\*)\]"
    r'|\[(?P<quoted>"(?:[^"\\]|\\.)*")\]'
)


def parse_pattern(pattern: str) -> list[Token]:
    if not pattern.startswith("$"):
        raise ValueError(f"path pattern must start with '$': {pattern!r}")
    tokens: list[Token] = []
    pos = 1
    while pos < len(pattern):
        m = _TOKEN.match(pattern, pos)
        if m is None:
            raise ValueError(f"bad path pattern {pattern!r} at position {pos}")
        if m.group("desc") is not None:
            name = m.group("desc")
            tokens.append(("desc", None if name == "*" else name))
        elif m.group("key") is not None:
            name = m.group("key")
            tokens.append(("key", None if name == "*" else name))
        elif m.group("index") is not None:
            idx = m.group("index")
            tokens.append(("index", None if idx == "*" else int(idx)))
        else:
            tokens.append(("key", json.loads(m.group("quoted"))))
        pos = m.end()
    return tokens


def _match(tokens: Sequence[Token], path: Sequence[PathPart]) -> bool:
    if not tokens:
        return not path
    kind, value = tokens[0]
    if kind == "desc":
        # ..name: the name at this level or any deeper one
        return any(
            isinstance(path[i], str)
            and (value is None or path[i] == value)
            and _match(tokens[1:], path[i + 1 :])
            for i in range(len(path))
        )
    if not path:
        return False
    part = path[0]
    if kind == "key":
        ok = isinstance(part, str) and (value is None or part == value)
    else:
        ok = isinstance(part, int) and (value is None or part == value)
    return ok and _match(tokens[1:], path[1:])


class _Patterns:
    def __init__(self, patterns: Iterable[str]) -> None:
        self._parsed = [parse_pattern(p) for p in patterns]

    def matches(self, path: Sequence[PathPart]) -> bool:
        return any(_match(tokens, path) for tokens in self._parsed)


# --- comparison -------------------------------------------------------------------------


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 string as an aware UTC datetime, or ``None`` if it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@dataclass
class _Comparer:
    rules: CompareRules
    ignore: _Patterns = field(init=False)
    timestamps: _Patterns = field(init=False)
    exact: _Patterns = field(init=False)
    unordered: list[tuple[list[Token], str | None]] = field(init=False)

    def __post_init__(self) -> None:
        self.ignore = _Patterns(self.rules.ignore)
        self.timestamps = _Patterns(self.rules.timestamps)
        self.exact = _Patterns(self.rules.exact)
        self.unordered = [(parse_pattern(u.path), u.within) for u in self.rules.unordered]

    def diff(self, expected: Any, actual: Any, path: Path, out: list[Difference]) -> None:
        if self.ignore.matches(path):
            return
        if self.timestamps.matches(path) and isinstance(expected, str):
            self._instant(expected, actual, path, out)
            return
        if isinstance(expected, dict):
            if not isinstance(actual, dict):
                out.append(Difference(render_path(path), expected, actual, "expected an object"))
                return
            for key in expected:
                sub = (*path, key)
                if key not in actual:
                    out.append(Difference(render_path(sub), expected[key], MISSING))
                else:
                    self.diff(expected[key], actual[key], sub, out)
            for key in actual:
                if key not in expected:
                    out.append(Difference(render_path((*path, key)), MISSING, actual[key]))
            return
        if isinstance(expected, list):
            if not isinstance(actual, list):
                out.append(Difference(render_path(path), expected, actual, "expected an array"))
                return
            within = self._unordered_rule(path)
            if within is None:
                self._ordered(expected, actual, path, out)
            else:
                self._unordered(expected, actual, path, within[0], out)
            return
        self._scalar(expected, actual, path, out)

    def _unordered_rule(self, path: Path) -> tuple[str | None] | None:
        for tokens, within in self.unordered:
            if _match(tokens, path):
                return (within,)
        return None

    def _ordered(
        self, expected: list[Any], actual: list[Any], path: Path, out: list[Difference]
    ) -> None:
        for i, item in enumerate(expected):
            if i < len(actual):
                self.diff(item, actual[i], (*path, i), out)
            else:
                out.append(Difference(render_path((*path, i)), item, MISSING))
        for i in range(len(expected), len(actual)):
            out.append(Difference(render_path((*path, i)), MISSING, actual[i]))

    def _unordered(
        self,
        expected: list[Any],
        actual: list[Any],
        path: Path,
        within: str | None,
        out: list[Difference],
    ) -> None:
        if within is None:
            self._multiset(list(enumerate(expected)), list(enumerate(actual)), path, out)
            return
        exp_runs = _runs(expected, within)
        act_runs = _runs(actual, within)
        for n, (key, items) in enumerate(exp_runs):
            if n >= len(act_runs):
                for i, item in items:
                    out.append(Difference(render_path((*path, i)), item, MISSING))
                continue
            act_key, act_items = act_runs[n]
            if key != act_key:
                out.append(
                    Difference(
                        render_path((*path, items[0][0], within)),
                        key,
                        act_key,
                        f"run {n} of equal {within!r} values differs",
                    )
                )
            self._multiset(items, act_items, path, out)
        for _key, act_items in act_runs[len(exp_runs) :]:
            for i, item in act_items:
                out.append(Difference(render_path((*path, i)), MISSING, item))

    def _multiset(
        self,
        expected: list[tuple[int, Any]],
        actual: list[tuple[int, Any]],
        path: Path,
        out: list[Difference],
    ) -> None:
        remaining = list(actual)
        unmatched: list[tuple[int, Any]] = []
        for i, item in expected:
            for j, (_k, candidate) in enumerate(remaining):
                probe: list[Difference] = []
                self.diff(item, candidate, (*path, i), probe)
                if not probe:
                    del remaining[j]
                    break
            else:
                unmatched.append((i, item))
        # Pair what is left in order so the diff shows the closest thing to a cause.
        for (i, item), (_k, candidate) in zip(unmatched, remaining, strict=False):
            self.diff(item, candidate, (*path, i), out)
        for i, item in unmatched[len(remaining) :]:
            out.append(Difference(render_path((*path, i)), item, MISSING, "no matching element"))
        for k, candidate in remaining[len(unmatched) :]:
            out.append(
                Difference(render_path((*path, k)), MISSING, candidate, "unexpected element")
            )

    def _instant(self, expected: str, actual: Any, path: Path, out: list[Difference]) -> None:
        want = parse_instant(expected)
        got = parse_instant(actual)
        if got is None:
            out.append(Difference(render_path(path), expected, actual, "not an ISO 8601 timestamp"))
        elif want is None or want != got:
            out.append(Difference(render_path(path), expected, actual, "different instants"))

    def _scalar(self, expected: Any, actual: Any, path: Path, out: list[Difference]) -> None:
        if _is_number(expected) and _is_number(actual):
            if isinstance(expected, int) or self.exact.matches(path):
                if expected != actual:
                    out.append(Difference(render_path(path), expected, actual))
            elif not math.isclose(expected, actual, rel_tol=self.rules.rel, abs_tol=self.rules.abs):
                note = f"beyond tolerance rel={self.rules.rel:g} abs={self.rules.abs:g}"
                out.append(Difference(render_path(path), expected, actual, note))
            return
        if type(expected) is not type(actual) or expected != actual:
            out.append(Difference(render_path(path), expected, actual))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _runs(items: list[Any], key: str) -> list[tuple[Any, list[tuple[int, Any]]]]:
    runs: list[tuple[Any, list[tuple[int, Any]]]] = []
    for i, item in enumerate(items):
        value = item.get(key, MISSING) if isinstance(item, dict) else MISSING
        if runs and value is not MISSING and value is not None and runs[-1][0] == value:
            runs[-1][1].append((i, item))
        else:
            runs.append((value, [(i, item)]))
    return runs


def diff(expected: Any, actual: Any, rules: CompareRules | None = None) -> list[Difference]:
    """Every difference between ``expected`` and ``actual`` under ``rules``, in path order."""
    out: list[Difference] = []
    _Comparer(rules or CompareRules()).diff(expected, actual, (), out)
    return out
