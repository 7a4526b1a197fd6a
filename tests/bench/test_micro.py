"""Micro-benchmarks of the per-request pure engines (issue 10): route matching and shadow diffs.

Each case asserts its result, so with the suite's ``--benchmark-disable`` it runs once as an
ordinary test and never fails on timing. For the figures:
``pytest tests/bench --benchmark-enable --benchmark-columns=min,median,ops``.

Route matching: a 1,000-route table (prefixes, exact paths, regexes, method, host and header
conditions), requests that hit early, middle and late routes of each kind, and a miss that falls to
the default (tests/unit/test_routing.py benchmarks one late prefix hit; these cover the rest).
Comparison engine: two ~10 KB JSON bodies of 40 catalogue items, equal, with a few changed
fields, with ignored volatile fields, reordered under ``array_order: ignore``, and not JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from strangler.diff import CapturedResponse, ComparePolicy, Diff, compare
from strangler.routing import Match, RouteEntry, RouteMatcher, RouteTable

ROUTES = 1000


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    host: str | None = "shop.example.com"
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str) -> str | None:
        return None


def route_table() -> RouteTable[int]:
    """1,000 routes over 50 services: for each service 14 prefixes (some with methods or hosts),
    3 exact paths, 2 regexes and 1 header-gated prefix, in that order."""
    routes: list[RouteEntry[int]] = []
    for service in range(ROUTES // 20):
        base = f"/api/svc{service}"
        routes.append(
            RouteEntry(
                f"svc{service}-beta",
                RouteMatcher(path_prefix=base, headers=(("x-beta", "1"),)),
                len(routes),
            )
        )
        for number in range(3):
            routes.append(
                RouteEntry(
                    f"svc{service}-exact{number}",
                    RouteMatcher(path=f"{base}/status{number}"),
                    len(routes),
                )
            )
        for number in range(2):
            routes.append(
                RouteEntry(
                    f"svc{service}-regex{number}",
                    RouteMatcher(path_regex=re.compile(rf"{base}/v{number}/items/\d+")),
                    len(routes),
                )
            )
        for number in range(14):
            conditions: dict[str, Any] = {"path_prefix": f"{base}/res{number}"}
            if number % 3 == 1:
                conditions["methods"] = frozenset({"GET", "HEAD"})
            elif number % 3 == 2:
                conditions["hosts"] = ("*.example.com",)
            routes.append(
                RouteEntry(f"svc{service}-res{number}", RouteMatcher(**conditions), len(routes))
            )
    assert len(routes) == ROUTES
    return RouteTable.build(routes, default=RouteEntry("default", RouteMatcher(), -1))


ROUTE_CASES = [
    # (id, request, expected route name)
    ("prefix-early", Request("/api/svc0/res0/items/7"), "svc0-res0"),
    ("prefix-middle-method", Request("/api/svc25/res4/items/7"), "svc25-res4"),
    ("prefix-late-host", Request("/api/svc49/res13/x"), "svc49-res13"),
    ("exact-middle", Request("/api/svc25/status2"), "svc25-exact2"),
    ("regex-middle", Request("/api/svc25/v1/items/12345"), "svc25-regex1"),
    ("header-middle", Request("/api/svc25/res3", headers={"x-beta": "1"}), "svc25-beta"),
    ("method-falls-through", Request("/api/svc25/res4/x", method="POST"), "default"),
    ("miss-to-default", Request("/checkout/cart/42"), "default"),
]


@pytest.fixture(scope="module")
def table() -> RouteTable[int]:
    return route_table()


@pytest.mark.parametrize(
    ("request_", "expected"),
    [case[1:] for case in ROUTE_CASES],
    ids=[case[0] for case in ROUTE_CASES],
)
@pytest.mark.parametrize("cache", ["cached", "decided"])
def test_route_match_1000_routes(
    benchmark: Any, table: RouteTable[int], request_: Request, expected: str, cache: str
) -> None:
    # "cached": the same request again, as a steady stream of one path gets (RouteTable keeps
    # answers that depend on method and path alone); "decided": the full decision every time.
    match = table.match if cache == "cached" else table.match_uncached
    found: Match[int] = benchmark(match, request_)
    assert found.entry is not None
    assert found.entry.name == expected


# ---- comparison engine --------------------------------------------------------------------
def catalogue(changes: int = 0, generated_at: str = "2026-11-26T12:00:00Z") -> dict[str, Any]:
    items = [
        {
            "id": number,
            "sku": f"CAT-{number:04d}",
            "name": f"Ceramic mug number {number}, 350 ml",
            "price": {"amount": 990 + number * 10, "currency": "EUR"},
            "stock": (number * 37) % 200,
            "tags": ["kitchen", "ceramic", "gift" if number % 2 else "sale"],
            "available": number % 5 != 0,
            "updated_at": f"2026-11-{1 + number % 28:02d}T08:00:00Z",
        }
        for number in range(40)
    ]
    for number in range(changes):
        items[number * 7]["price"]["amount"] += 1
    return {"generated_at": generated_at, "total": len(items), "items": items}


def captured(body: dict[str, Any] | bytes) -> CapturedResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return CapturedResponse(200, (("Content-Type", "application/json"),), raw)


PRIMARY = captured(catalogue())
SHUFFLED = catalogue()
SHUFFLED["items"] = SHUFFLED["items"][::-1]
STRICT = ComparePolicy()
IGNORING = ComparePolicy(ignore_paths=("$.generated_at", "$.items[*].updated_at"))
UNORDERED = ComparePolicy(array_order="ignore")

DIFF_CASES = [
    # (id, shadow, policy, differences expected)
    ("equal", captured(catalogue()), STRICT, 0),
    ("five-prices-changed", captured(catalogue(changes=5)), STRICT, 5),
    ("volatile-ignored", captured(catalogue(generated_at="2026-11-26T12:00:01Z")), IGNORING, 0),
    ("reordered-array-ignore", captured(SHUFFLED), UNORDERED, 0),
    ("not-json", captured(b"x" * len(PRIMARY.body)), STRICT, 1),
]


def test_bodies_are_about_10_kb() -> None:
    assert 9_000 <= len(PRIMARY.body) <= 12_000


@pytest.mark.parametrize(
    ("shadow", "policy", "expected"),
    [case[1:] for case in DIFF_CASES],
    ids=[case[0] for case in DIFF_CASES],
)
def test_compare_10kb_json(
    benchmark: Any, shadow: CapturedResponse, policy: ComparePolicy, expected: int
) -> None:
    diff: Diff = benchmark(compare, PRIMARY, shadow, policy)
    assert len(diff.differences) == expected, diff.differences
