"""The shadow comparison engine: two captured responses and a policy in, a ``Diff`` out.

Role: decide whether the extracted service answered the same as the monolith. ``compare`` looks at
the status, the headers the policy names, and the body: structurally when both sides are JSON and
both parse, byte for byte otherwise. ``NoiseModel`` learns, as Diffy does, which fields differ even
between two answers of the monolith itself, so ``compare`` can set those aside.

Invariants:
- Pure: no I/O, no clock, no logging. Everything a ``Difference`` carries is JSON-able and short
  (strings cut to ``PREVIEW_CHARS``; objects and arrays shown as compact JSON text).
- JSON semantics: object key order never matters; ``1 == 1.0``; a boolean is never a number;
  values of different JSON types give one difference of kind ``"type"`` and no descent.
- Ignore rules (``ComparePolicy.ignore_paths``) cover the whole subtree under a matching node, and a
  key that is ignored is never reported as missing or extra.
- With ``array_order="ignore"`` arrays are multisets: equal elements pair up whatever their
  positions; leftovers are paired by closeness and diffed field by field, and the rest are reported
  as missing (primary index) or extra (shadow index).
- Bounded work and output: at most ``max_differences`` differences are listed (a note says when the
  list was cut); a body cut at the capture cap is not compared (a note says so); nesting too deep to
  walk falls back to comparing bytes; ``NoiseModel`` holds at most ``max_fields`` field names.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from strangler.jsonpath import JsonPath, compile_path, format_path, generalise, generalise_field

__all__ = [
    "ARRAY_ORDERS",
    "NOTE_BODY_TRUNCATED",
    "PREVIEW_CHARS",
    "CapturedResponse",
    "ComparePolicy",
    "Diff",
    "Difference",
    "NoiseModel",
    "compare",
]

PREVIEW_CHARS = 200
ARRAY_ORDERS = ("strict", "ignore")
NOTE_BODY_TRUNCATED = "body not compared (truncated)"

_PAIRING_WORK_LIMIT = 400  # leftover primary x shadow elements scored before falling back to order
_DISTANCE_CAP = 32  # differences counted when scoring how close two leftover elements are
_KINDS: Mapping[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_IGNORED: Hashable = ("ignored",)
_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True, slots=True)
class CapturedResponse:
    """One upstream answer as captured: header names as received, body possibly cut at a cap."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class ComparePolicy:
    """What to compare; validated and compiled once, when built."""

    compare_status: bool = True
    headers: frozenset[str] = frozenset({"content-type"})
    ignore_headers: frozenset[str] = frozenset()
    ignore_paths: tuple[str, ...] = ()
    array_order: str = "strict"
    max_differences: int = 100
    _compared_headers: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _ignores: Mapping[int, tuple[JsonPath, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.array_order not in ARRAY_ORDERS:
            raise ValueError(
                f"array_order must be one of {', '.join(ARRAY_ORDERS)} (got {self.array_order!r})"
            )
        paths_given: object = self.ignore_paths  # config may hand over a bare string
        if isinstance(paths_given, str):
            raise ValueError("ignore_paths must be a list of paths, not a single string")
        if self.max_differences < 1:
            raise ValueError(f"max_differences must be at least 1 (got {self.max_differences})")
        headers = frozenset(name.strip().lower() for name in self.headers)
        ignore_headers = frozenset(name.strip().lower() for name in self.ignore_headers)
        by_length: dict[int, list[JsonPath]] = {}
        for position, text in enumerate(self.ignore_paths):
            try:
                compiled = compile_path(text)
            except ValueError as error:
                raise ValueError(f"ignore_paths[{position}]: {error}") from None
            by_length.setdefault(len(compiled.segments), []).append(compiled)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "ignore_headers", ignore_headers)
        object.__setattr__(self, "ignore_paths", tuple(self.ignore_paths))
        object.__setattr__(self, "_compared_headers", tuple(sorted(headers - ignore_headers)))
        object.__setattr__(self, "_ignores", {n: tuple(ps) for n, ps in by_length.items()})

    @property
    def compared_headers(self) -> tuple[str, ...]:
        """The lower-case header names compared (`headers` minus `ignore_headers`), sorted."""
        return self._compared_headers


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs: ``status``, ``header:<name>``, ``body``, or a JSON path."""

    field: str
    primary: object
    shadow: object
    kind: str  # "changed", "missing_in_shadow", "extra_in_shadow", "type"


@dataclass(frozen=True, slots=True)
class Diff:
    """The outcome of one comparison; ``notes`` say what was not compared or not listed."""

    differences: tuple[Difference, ...]
    noise_ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return not self.differences


class NoiseModel:
    """Fields that differ between two primary answers to the same request, generalised."""

    __slots__ = ("_counts", "_dropped", "_max_fields")

    def __init__(self, max_fields: int = 1000) -> None:
        if max_fields < 1:
            raise ValueError(f"max_fields must be at least 1 (got {max_fields})")
        self._max_fields = max_fields
        self._counts: dict[str, int] = {}
        self._dropped = 0

    def learn(
        self, primary_a: CapturedResponse, primary_b: CapturedResponse, policy: ComparePolicy
    ) -> None:
        """Record every field that differs between two primaries; each counts once per call."""
        sink, _ = _run(primary_a, primary_b, policy, noise=None)
        for general in dict.fromkeys(general for _, general in sink.entries):
            if general in self._counts:
                self._counts[general] += 1
            elif len(self._counts) < self._max_fields:
                self._counts[general] = 1
            else:
                self._dropped += 1

    def is_noise(self, field: str) -> bool:
        """True when ``field`` (concrete like ``$.items[3].x`` or generalised) was learned."""
        return generalise_field(field) in self._counts

    def noisy_fields(self) -> tuple[str, ...]:
        return tuple(sorted(self._counts))

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def dropped(self) -> int:
        """Observations of new fields turned away because the model was full."""
        return self._dropped

    def _knows(self, general: str) -> bool:
        return general in self._counts


def compare(
    primary: CapturedResponse,
    shadow: CapturedResponse,
    policy: ComparePolicy,
    noise: NoiseModel | None = None,
) -> Diff:
    """Compare the shadow answer with the primary one under ``policy``; set learned noise aside."""
    sink, notes = _run(primary, shadow, policy, noise)
    return Diff(
        differences=tuple(difference for difference, _ in sink.entries),
        noise_ignored=tuple(sink.noise_ignored),
        notes=tuple(notes),
    )


class _Full(Exception):
    """Raised by a sink asked to hold more than its limit; unwinds the walk."""


class _Sink:
    """Collects differences with their generalised field, setting known noise aside.

    A sink that does not ``keep`` only counts: it scores how close two array elements are.
    """

    __slots__ = ("count", "entries", "keep", "limit", "noise", "noise_ignored")

    def __init__(self, noise: NoiseModel | None, limit: int, keep: bool = True) -> None:
        self.noise = noise
        self.limit = limit
        self.keep = keep
        self.count = 0
        self.entries: list[tuple[Difference, str]] = []
        self.noise_ignored: dict[str, None] = {}  # an ordered set

    def add(self, field: str, general: str, primary: object, shadow: object, kind: str) -> None:
        if self.noise is not None and self.noise._knows(general):
            self.noise_ignored[general] = None
            return
        if self.count >= self.limit:
            raise _Full
        self.count += 1
        if self.keep:
            self.entries.append((Difference(field, _short(primary), _short(shadow), kind), general))


def _run(
    primary: CapturedResponse,
    shadow: CapturedResponse,
    policy: ComparePolicy,
    noise: NoiseModel | None,
) -> tuple[_Sink, list[str]]:
    sink = _Sink(noise, policy.max_differences)
    notes: list[str] = []
    try:
        if policy.compare_status and primary.status != shadow.status:
            sink.add("status", "status", primary.status, shadow.status, "changed")
        primary_headers = _header_values(primary.headers, policy._compared_headers)
        shadow_headers = _header_values(shadow.headers, policy._compared_headers)
        for name in policy._compared_headers:
            _compare_header(name, primary_headers.get(name), shadow_headers.get(name), sink)
        if primary.truncated or shadow.truncated:
            notes.append(NOTE_BODY_TRUNCATED)
        else:
            _compare_bodies(primary, shadow, policy, sink)
    except _Full:
        notes.append(f"more than {policy.max_differences} differences; the rest are not listed")
    return sink, notes


def _header_values(headers: Sequence[tuple[str, str]], wanted: Sequence[str]) -> dict[str, str]:
    """Values of the wanted headers by lower-case name; repeated headers joined with ", "."""
    values: dict[str, str] = {}
    if not wanted:
        return values
    for name, value in headers:
        lowered = name.lower()
        if lowered in wanted:
            stripped = value.strip()
            values[lowered] = f"{values[lowered]}, {stripped}" if lowered in values else stripped
    return values


def _compare_header(name: str, primary: str | None, shadow: str | None, sink: _Sink) -> None:
    if primary == shadow:
        return
    field_name = f"header:{name}"
    kind = (
        "missing_in_shadow"
        if shadow is None
        else "extra_in_shadow"
        if primary is None
        else "changed"
    )
    sink.add(field_name, field_name, primary, shadow, kind)


def _content_type(response: CapturedResponse) -> str:
    for name, value in response.headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def _is_json_type(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _compare_bodies(
    primary: CapturedResponse, shadow: CapturedResponse, policy: ComparePolicy, sink: _Sink
) -> None:
    if primary.body == shadow.body:  # whatever the types, equal bytes hold no difference
        return
    if _is_json_type(_content_type(primary)) and _is_json_type(_content_type(shadow)):
        primary_ok, primary_value = _parse_json(primary.body)
        shadow_ok, shadow_value = _parse_json(shadow.body)
        if primary_ok and shadow_ok:
            walker = _BodyWalker(policy._ignores, policy.array_order == "ignore", sink)
            listed = len(sink.entries)
            try:
                walker.walk(primary_value, shadow_value, ())
                return
            except RecursionError:  # too deep to walk: judge the bytes instead
                del sink.entries[listed:]
                sink.count = listed
    sink.add("body", "body", _preview(primary.body), _preview(shadow.body), "changed")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse_json(body: bytes) -> tuple[bool, object]:
    try:
        return True, json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


class _BodyWalker:
    """Walks two parsed JSON values side by side, reporting into a sink."""

    __slots__ = ("_ignores", "_sink", "_unordered")

    def __init__(
        self, ignores: Mapping[int, tuple[JsonPath, ...]], unordered: bool, sink: _Sink
    ) -> None:
        self._ignores = ignores
        self._unordered = unordered
        self._sink = sink

    def walk(self, primary: object, shadow: object, path: tuple[str | int, ...]) -> None:
        if self._ignored(path):
            return
        kind = _KINDS[type(primary)]
        if kind != _KINDS[type(shadow)]:
            self._emit(path, primary, shadow, "type")
        elif isinstance(primary, dict) and isinstance(shadow, dict):
            self._walk_object(primary, shadow, path)
        elif isinstance(primary, list) and isinstance(shadow, list):
            if self._unordered:
                self._walk_multiset(primary, shadow, path)
            else:
                self._walk_in_order(primary, shadow, path)
        elif primary != shadow:
            self._emit(path, primary, shadow, "changed")

    def _ignored(self, path: tuple[str | int, ...]) -> bool:
        patterns = self._ignores.get(len(path))
        return patterns is not None and any(pattern.matches(path) for pattern in patterns)

    def _emit(
        self, path: tuple[str | int, ...], primary: object, shadow: object, kind: str
    ) -> None:
        self._sink.add(format_path(path), generalise(path), primary, shadow, kind)

    def _walk_object(
        self, primary: dict[str, object], shadow: dict[str, object], path: tuple[str | int, ...]
    ) -> None:
        for key, value in primary.items():
            if key in shadow:
                other = shadow[key]
                # Equal leaves of one type need no path, no ignore check, no call: the common case.
                if type(value) is type(other) and type(value) in _SCALARS and value == other:
                    continue
                self.walk(value, other, (*path, key))
            elif not self._ignored((*path, key)):
                self._emit((*path, key), value, None, "missing_in_shadow")
        for key, value in shadow.items():
            child = (*path, key)
            if key not in primary and not self._ignored(child):
                self._emit(child, None, value, "extra_in_shadow")

    def _walk_in_order(
        self, primary: list[object], shadow: list[object], path: tuple[str | int, ...]
    ) -> None:
        common = min(len(primary), len(shadow))
        for index in range(common):
            value, other = primary[index], shadow[index]
            if type(value) is type(other) and type(value) in _SCALARS and value == other:
                continue
            self.walk(value, other, (*path, index))
        self._report_leftovers(
            primary, shadow, path, range(common, len(primary)), range(common, len(shadow))
        )

    def _walk_multiset(
        self, primary: list[object], shadow: list[object], path: tuple[str | int, ...]
    ) -> None:
        waiting: dict[Hashable, list[int]] = {}
        for index, value in enumerate(shadow):
            waiting.setdefault(self._canonical(value, (*path, index)), []).append(index)
        for indexes in waiting.values():
            indexes.reverse()  # pop() hands out the lowest shadow index first
        unmatched_primary: list[int] = []
        for index, value in enumerate(primary):
            same = waiting.get(self._canonical(value, (*path, index)))
            if same:
                same.pop()
            else:
                unmatched_primary.append(index)
        unmatched_shadow = sorted(index for indexes in waiting.values() for index in indexes)
        pairs = self._pair(primary, shadow, path, unmatched_primary, unmatched_shadow)
        for primary_index, shadow_index in pairs:
            self.walk(primary[primary_index], shadow[shadow_index], (*path, primary_index))
        primary_only = sorted(set(unmatched_primary).difference(p for p, _ in pairs))
        shadow_only = sorted(set(unmatched_shadow).difference(s for _, s in pairs))
        self._report_leftovers(primary, shadow, path, primary_only, shadow_only)

    def _report_leftovers(
        self,
        primary: list[object],
        shadow: list[object],
        path: tuple[str | int, ...],
        primary_only: Sequence[int],
        shadow_only: Sequence[int],
    ) -> None:
        for index in primary_only:
            child = (*path, index)
            if not self._ignored(child):
                self._emit(child, primary[index], None, "missing_in_shadow")
        for index in shadow_only:
            child = (*path, index)
            if not self._ignored(child):
                self._emit(child, None, shadow[index], "extra_in_shadow")

    def _pair(
        self,
        primary: list[object],
        shadow: list[object],
        path: tuple[str | int, ...],
        primary_indexes: list[int],
        shadow_indexes: list[int],
    ) -> list[tuple[int, int]]:
        """Pair leftover elements, closest first, so a changed element reads as field changes."""
        if not primary_indexes or not shadow_indexes:
            return []
        if len(primary_indexes) * len(shadow_indexes) > _PAIRING_WORK_LIMIT:
            return list(zip(primary_indexes, shadow_indexes, strict=False))
        scored = sorted(
            (self._distance(primary[p], shadow[s], (*path, p)), p, s)
            for p in primary_indexes
            for s in shadow_indexes
        )
        taken_primary, taken_shadow, pairs = set[int](), set[int](), list[tuple[int, int]]()
        for _, p, s in scored:
            if p not in taken_primary and s not in taken_shadow:
                taken_primary.add(p)
                taken_shadow.add(s)
                pairs.append((p, s))
        return sorted(pairs)

    def _distance(self, primary: object, shadow: object, path: tuple[str | int, ...]) -> int:
        counter = _Sink(self._sink.noise, _DISTANCE_CAP, keep=False)
        try:
            _BodyWalker(self._ignores, self._unordered, counter).walk(primary, shadow, path)
        except _Full:
            return _DISTANCE_CAP + 1
        return counter.count

    def _canonical(self, value: object, path: tuple[str | int, ...]) -> Hashable:
        """A hashable form equal for values this walker would find equal (ignores applied)."""
        if self._ignored(path):
            return _IGNORED
        if isinstance(value, dict):
            members = []
            for key, member in value.items():
                canonical = self._canonical(member, (*path, key))
                if canonical is not _IGNORED:
                    members.append((key, canonical))
            return ("object", frozenset(members))
        if isinstance(value, list):
            elements = [self._canonical(e, (*path, i)) for i, e in enumerate(value)]
            if self._unordered:
                return ("multiset", frozenset(Counter(elements).items()))
            return ("array", tuple(elements))
        # ("number", 1) == ("number", 1.0) and they hash alike; booleans keep their own tag.
        return (_KINDS[type(value)], value)


def _short(value: object) -> object:
    if isinstance(value, str):
        return value if len(value) <= PREVIEW_CHARS else value[:PREVIEW_CHARS] + "…"
    if isinstance(value, dict | list):
        return _short(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _preview(body: bytes) -> str:
    """The start of a body as text, for a ``body`` difference."""
    text = body[: PREVIEW_CHARS * 4].decode("utf-8", errors="replace")
    if len(text) > PREVIEW_CHARS or len(body) > PREVIEW_CHARS * 4:
        return text[:PREVIEW_CHARS] + "…"
    return text
