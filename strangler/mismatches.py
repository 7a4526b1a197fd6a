"""Recent shadow mismatches: a bounded, redacted record of what differed, for dashboard and logs.

Role: turn one failed comparison into a ``MismatchRecord`` safe to show and to write down, keep the
newest ones in a ring buffer, count which fields differ per route, and spell a record as one JSON
line (the caller writes it; this module does no I/O and reads no clock: ``at`` is supplied).

Invariants:
- Secrets never enter a record: values of Authorization, Proxy-Authorization, Cookie, Set-Cookie
  and any configured extra header are replaced by ``"[redacted]"`` in every header tuple and in
  ``header:<name>`` differences, whatever the case of the name.
- Body previews hold at most ``preview_bytes`` bytes of the body, decoded as UTF-8 with
  replacement; a multi-byte character cut at the limit is dropped, not mangled.
- Memory is bounded: at most ``capacity`` records (the oldest go first) and at most
  ``MAX_FIELDS_PER_ROUTE`` counted fields per route (later new fields are not counted).
- Record ids increase by one per record and never repeat, even across ``clear()``.
- ``jsonl_line`` returns one line with no line break of any kind: JSON escapes ``\\n`` and, with
  ASCII output, U+2028 and U+2029 too.
"""

from __future__ import annotations

import codecs
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from strangler.diff import CapturedResponse, Diff, Difference
from strangler.jsonpath import generalise_field

__all__ = [
    "ALWAYS_REDACTED",
    "MAX_FIELDS_PER_ROUTE",
    "REDACTED",
    "Headers",
    "MismatchRecord",
    "MismatchStore",
    "body_preview",
    "jsonl_line",
    "redact_headers",
]

REDACTED = "[redacted]"
ALWAYS_REDACTED = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
MAX_FIELDS_PER_ROUTE = 500

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MismatchRecord:
    """One comparison that did not match, already redacted and trimmed."""

    id: int
    at: float
    route: str
    method: str
    path: str
    query: str
    primary_status: int
    shadow_status: int
    differences: tuple[Difference, ...]
    primary_body_preview: str
    shadow_body_preview: str
    request_headers: Headers
    primary_headers: Headers
    shadow_headers: Headers
    noise_ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """A dict of JSON-able values (lists for tuples), in a stable key order."""
        return {
            "id": self.id,
            "at": self.at,
            "route": self.route,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "primary_status": self.primary_status,
            "shadow_status": self.shadow_status,
            "differences": [
                {"field": d.field, "primary": d.primary, "shadow": d.shadow, "kind": d.kind}
                for d in self.differences
            ],
            "noise_ignored": list(self.noise_ignored),
            "notes": list(self.notes),
            "primary_body_preview": self.primary_body_preview,
            "shadow_body_preview": self.shadow_body_preview,
            "request_headers": [list(pair) for pair in self.request_headers],
            "primary_headers": [list(pair) for pair in self.primary_headers],
            "shadow_headers": [list(pair) for pair in self.shadow_headers],
        }


class MismatchStore:
    """The newest mismatches (a ring buffer) and per-route counts of differing fields."""

    __slots__ = ("_capacity", "_field_counts", "_next_id", "_preview_bytes", "_records", "_redact")

    def __init__(
        self, capacity: int = 100, preview_bytes: int = 2048, redact: Iterable[str] = ()
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 (got {capacity})")
        if preview_bytes < 0:
            raise ValueError(f"preview_bytes must not be negative (got {preview_bytes})")
        self._capacity = capacity
        self._preview_bytes = preview_bytes
        self._redact = ALWAYS_REDACTED | {name.strip().lower() for name in redact}
        self._records: deque[MismatchRecord] = deque(maxlen=capacity)
        self._field_counts: dict[str, dict[str, int]] = {}
        self._next_id = 1

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._records)

    def add(
        self,
        *,
        at: float,
        route: str,
        method: str,
        path: str,
        query: str,
        request_headers: Iterable[tuple[str, str]],
        primary: CapturedResponse,
        shadow: CapturedResponse,
        diff: Diff,
    ) -> MismatchRecord:
        """Record a mismatch (redacting and trimming it), dropping the oldest when full."""
        record = MismatchRecord(
            id=self._next_id,
            at=at,
            route=route,
            method=method,
            path=path,
            query=query,
            primary_status=primary.status,
            shadow_status=shadow.status,
            differences=tuple(self._redact_difference(d) for d in diff.differences),
            primary_body_preview=body_preview(primary.body, self._preview_bytes),
            shadow_body_preview=body_preview(shadow.body, self._preview_bytes),
            request_headers=redact_headers(request_headers, self._redact),
            primary_headers=redact_headers(primary.headers, self._redact),
            shadow_headers=redact_headers(shadow.headers, self._redact),
            noise_ignored=diff.noise_ignored,
            notes=diff.notes,
        )
        self._next_id += 1
        self._records.append(record)
        self._count_fields(route, record.differences)
        return record

    def recent(self, route: str | None = None, limit: int = 50) -> list[MismatchRecord]:
        """Up to ``limit`` records, newest first, of one route or of all."""
        found: list[MismatchRecord] = []
        if limit <= 0:
            return found
        for record in reversed(self._records):
            if route is None or record.route == route:
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    def field_counts(self, route: str) -> dict[str, int]:
        """How often each field differed on ``route``; indexes generalised (``$.items[*].x``)."""
        return dict(self._field_counts.get(route, {}))

    def clear(self) -> None:
        """Forget records and counts; ids keep increasing."""
        self._records.clear()
        self._field_counts.clear()

    def _count_fields(self, route: str, differences: Iterable[Difference]) -> None:
        counts = self._field_counts.setdefault(route, {})
        for field in dict.fromkeys(generalise_field(d.field) for d in differences):
            if field in counts:
                counts[field] += 1
            elif len(counts) < MAX_FIELDS_PER_ROUTE:
                counts[field] = 1

    def _redact_difference(self, difference: Difference) -> Difference:
        name = difference.field.removeprefix("header:")
        if name == difference.field or name not in self._redact:
            return difference
        return Difference(
            field=difference.field,
            primary=None if difference.primary is None else REDACTED,
            shadow=None if difference.shadow is None else REDACTED,
            kind=difference.kind,
        )


def redact_headers(headers: Iterable[tuple[str, str]], names: frozenset[str]) -> Headers:
    """Headers as given, with the value of every header named in ``names`` (lower-case) hidden."""
    return tuple((name, REDACTED if name.lower() in names else value) for name, value in headers)


def body_preview(body: bytes, limit: int) -> str:
    """At most ``limit`` bytes of ``body`` as text; a character cut at the limit is dropped."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(body[:limit], final=len(body) <= limit)


def jsonl_line(record: MismatchRecord) -> str:
    """The record as one JSON line, without the trailing newline (the writer adds it)."""
    return json.dumps(record.to_json(), ensure_ascii=True, separators=(",", ":"))
