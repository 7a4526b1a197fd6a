"""Tests for strangler.mismatches: redaction, bounded storage and the JSON-lines record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strangler.diff import CapturedResponse, ComparePolicy, Diff, Difference, compare
from strangler.mismatches import (
    MAX_FIELDS_PER_ROUTE,
    REDACTED,
    MismatchRecord,
    MismatchStore,
    body_preview,
    jsonl_line,
)

FIXTURES = Path(__file__).parent / "fixtures" / "diff"
JSON = (("Content-Type", "application/json"),)
PRICE_CHANGED = Diff(differences=(Difference("$.items[1].unit_price", 1.2, 1.25, "changed"),))


def captured(
    body: bytes = b"{}", status: int = 200, headers: tuple[tuple[str, str], ...] = JSON
) -> CapturedResponse:
    return CapturedResponse(status=status, headers=headers, body=body)


def add(
    store: MismatchStore,
    *,
    route: str = "orders",
    diff: Diff = PRICE_CHANGED,
    at: float = 1_714_644_847.0,
    request_headers: tuple[tuple[str, str], ...] = (),
    primary: CapturedResponse | None = None,
    shadow: CapturedResponse | None = None,
) -> MismatchRecord:
    return store.add(
        at=at,
        route=route,
        method="GET",
        path="/api/orders/ord_7f3a9c",
        query="expand=items",
        request_headers=request_headers,
        primary=primary or captured(),
        shadow=shadow or captured(status=200),
        diff=diff,
    )


@pytest.mark.parametrize(
    "name",
    ["Authorization", "proxy-authorization", "COOKIE", "Set-Cookie", "X-Api-Key"],
    ids=[
        "authorization",
        "proxy-authorization",
        "cookie-upper-case",
        "set-cookie",
        "configured-extra",
    ],
)
def test_secret_headers_are_redacted_everywhere(name: str) -> None:
    store = MismatchStore(redact=["x-api-key"])
    secret = "s3cr3t-value"
    record = add(
        store,
        request_headers=(("Accept", "application/json"), (name, secret)),
        primary=captured(headers=(*JSON, (name, secret))),
        shadow=captured(headers=(*JSON, (name, secret + "2"))),
    )
    assert record.request_headers == (("Accept", "application/json"), (name, REDACTED))
    assert record.primary_headers == (*JSON, (name, REDACTED))
    assert record.shadow_headers == (*JSON, (name, REDACTED))
    assert secret not in jsonl_line(record)


def test_header_differences_on_secret_headers_are_redacted() -> None:
    policy = ComparePolicy(headers=frozenset({"content-type", "set-cookie", "etag"}))
    primary = captured(headers=(*JSON, ("Set-Cookie", "sid=abc"), ("ETag", '"1"')))
    shadow = captured(headers=(*JSON, ("ETag", '"2"')))
    store = MismatchStore()
    record = add(store, diff=compare(primary, shadow, policy), primary=primary, shadow=shadow)
    assert record.differences == (
        Difference("header:etag", '"1"', '"2"', "changed"),
        Difference("header:set-cookie", REDACTED, None, "missing_in_shadow"),
    )
    assert "sid=abc" not in jsonl_line(record)


def test_non_secret_headers_are_kept() -> None:
    record = add(MismatchStore(), request_headers=(("X-Request-Id", "r-1"), ("Accept", "*/*")))
    assert record.request_headers == (("X-Request-Id", "r-1"), ("Accept", "*/*"))


@pytest.mark.parametrize(
    ("body", "limit", "expected"),
    [
        (b'{"total": 49.0}', 2048, '{"total": 49.0}'),
        (b"0123456789", 4, "0123"),
        ("naïve".encode(), 3, "na"),  # the cut falls inside "ï": the half character is dropped
        ("naïve".encode(), 4, "naï"),
        (b"\xff\xfeok", 10, "\ufffd\ufffdok"),
        (b"abc", 0, ""),
    ],
    ids=[
        "short-body-whole",
        "cut-at-limit",
        "cut-mid-character",
        "cut-after-character",
        "invalid-utf8",
        "zero",
    ],
)
def test_body_preview(body: bytes, limit: int, expected: str) -> None:
    assert body_preview(body, limit) == expected


def test_record_previews_bodies_with_the_configured_size() -> None:
    store = MismatchStore(preview_bytes=16)
    monolith = (FIXTURES / "order_monolith.json").read_bytes()
    record = add(store, primary=captured(monolith), shadow=captured(b"short"))
    assert record.primary_body_preview == monolith[:16].decode()
    assert record.shadow_body_preview == "short"


def test_ring_buffer_keeps_the_newest_records() -> None:
    store = MismatchStore(capacity=3)
    records = [add(store, at=float(n)) for n in range(5)]
    assert len(store) == 3
    assert [r.id for r in records] == [1, 2, 3, 4, 5]
    assert [r.id for r in store.recent()] == [5, 4, 3]


def test_recent_filters_by_route_and_limits() -> None:
    store = MismatchStore()
    for route in ["orders", "users", "orders", "orders", "users"]:
        add(store, route=route)
    assert [r.id for r in store.recent("orders")] == [4, 3, 1]
    assert [r.id for r in store.recent("orders", limit=2)] == [4, 3]
    assert [r.id for r in store.recent(limit=2)] == [5, 4]
    assert store.recent("payments") == []
    assert store.recent(limit=0) == []


def test_field_counts_are_generalised_per_route_and_counted_once_per_record() -> None:
    store = MismatchStore()
    two_items = Diff(
        differences=(
            Difference("$.items[0].updated_at", "a", "b", "changed"),
            Difference("$.items[1].updated_at", "a", "b", "changed"),
            Difference("status", 200, 500, "changed"),
        )
    )
    add(store, diff=two_items)
    add(store, diff=PRICE_CHANGED)
    add(store, route="users", diff=PRICE_CHANGED)
    assert store.field_counts("orders") == {
        "$.items[*].updated_at": 1,
        "status": 1,
        "$.items[*].unit_price": 1,
    }
    assert store.field_counts("users") == {"$.items[*].unit_price": 1}
    assert store.field_counts("payments") == {}


def test_field_counts_are_bounded_per_route() -> None:
    store = MismatchStore(capacity=1)
    for n in range(MAX_FIELDS_PER_ROUTE + 20):
        add(store, diff=Diff(differences=(Difference(f"$.k{n}", 1, 2, "changed"),)))
    counts = store.field_counts("orders")
    assert len(counts) == MAX_FIELDS_PER_ROUTE
    assert "$.k0" in counts
    assert f"$.k{MAX_FIELDS_PER_ROUTE}" not in counts


def test_clear_forgets_records_and_counts_but_ids_keep_increasing() -> None:
    store = MismatchStore()
    add(store)
    add(store)
    store.clear()
    assert len(store) == 0
    assert store.recent() == []
    assert store.field_counts("orders") == {}
    assert add(store).id == 3


def test_jsonl_line_is_one_line_and_round_trips() -> None:
    tricky = "line one\nline two\r\u2028\u2029 done"
    diff = Diff(
        differences=(Difference("$.note", tricky, "x", "changed"),),
        noise_ignored=("$.generated_at",),
        notes=("body not compared (truncated)",),
    )
    record = add(MismatchStore(), diff=diff, primary=captured(tricky.encode()))
    line = jsonl_line(record)
    assert len(line.splitlines()) == 1
    assert not any(char in line for char in "\n\r\u2028\u2029")
    decoded = json.loads(line)
    assert decoded == record.to_json()
    assert decoded["differences"] == [
        {"field": "$.note", "primary": tricky, "shadow": "x", "kind": "changed"}
    ]
    assert decoded["noise_ignored"] == ["$.generated_at"]
    assert decoded["primary_body_preview"] == tricky


def test_to_json_carries_the_request_and_both_answers() -> None:
    record = add(
        MismatchStore(),
        primary=captured(status=200),
        shadow=captured(status=502),
        request_headers=(("Accept", "application/json"),),
    )
    assert record.to_json() == {
        "id": 1,
        "at": 1_714_644_847.0,
        "route": "orders",
        "method": "GET",
        "path": "/api/orders/ord_7f3a9c",
        "query": "expand=items",
        "primary_status": 200,
        "shadow_status": 502,
        "differences": [
            {"field": "$.items[1].unit_price", "primary": 1.2, "shadow": 1.25, "kind": "changed"}
        ],
        "noise_ignored": [],
        "notes": [],
        "primary_body_preview": "{}",
        "shadow_body_preview": "{}",
        "request_headers": [["Accept", "application/json"]],
        "primary_headers": [["Content-Type", "application/json"]],
        "shadow_headers": [["Content-Type", "application/json"]],
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity must be at least 1"),
        ({"preview_bytes": -1}, "preview_bytes must not be negative"),
    ],
    ids=["zero-capacity", "negative-preview"],
)
def test_store_validation(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MismatchStore(**kwargs)  # type: ignore[arg-type]
