"""Tests of strangler.routing: matching, order, default, 405, explain, shadowing, rewrite."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from strangler.reachability import unreachable_routes
from strangler.routing import (
    RequestFacts,
    RouteEntry,
    RouteMatcher,
    RouteTable,
    regex_directory,
    rewrite_path,
)


@dataclass(frozen=True)
class FakeRequest:
    path: str = "/"
    method: str = "GET"
    host: str | None = "shop.example.com"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str) -> str | None:
        return self.cookies.get(name)


def _facts(req: FakeRequest) -> RequestFacts:
    return req  # checks at type level that FakeRequest satisfies the protocol


def entry(name: str, **conditions: Any) -> RouteEntry[str]:
    return RouteEntry(name, RouteMatcher(**conditions), payload=f"payload-{name}")


def single(matcher: RouteMatcher) -> RouteTable[str]:
    return RouteTable.build([RouteEntry("only", matcher, "x")], default=None)


ORDERS = re.compile(r"/api/orders/\d+")

MATCHER_CASES = [
    # (id, matcher, request, accepted)
    (
        "prefix-exact-path",
        RouteMatcher(path_prefix="/api/orders"),
        FakeRequest("/api/orders"),
        True,
    ),
    ("prefix-child", RouteMatcher(path_prefix="/api/orders"), FakeRequest("/api/orders/7"), True),
    ("prefix-trailing", RouteMatcher(path_prefix="/api/orders"), FakeRequest("/api/orders/"), True),
    (
        "prefix-not-segment",
        RouteMatcher(path_prefix="/api/orders"),
        FakeRequest("/api/ordersX"),
        False,
    ),
    ("prefix-parent", RouteMatcher(path_prefix="/api/orders"), FakeRequest("/api"), False),
    ("prefix-root-all", RouteMatcher(path_prefix="/"), FakeRequest("/anything/at/all"), True),
    ("prefix-root-root", RouteMatcher(path_prefix="/"), FakeRequest("/"), True),
    (
        "slash-prefix-child",
        RouteMatcher(path_prefix="/api/orders/"),
        FakeRequest("/api/orders/7"),
        True,
    ),
    (
        "slash-prefix-dir",
        RouteMatcher(path_prefix="/api/orders/"),
        FakeRequest("/api/orders/"),
        True,
    ),
    (
        "slash-prefix-bare",
        RouteMatcher(path_prefix="/api/orders/"),
        FakeRequest("/api/orders"),
        False,
    ),
    ("exact-hit", RouteMatcher(path="/health"), FakeRequest("/health"), True),
    ("exact-child-miss", RouteMatcher(path="/health"), FakeRequest("/health/x"), False),
    ("exact-slash-miss", RouteMatcher(path="/health"), FakeRequest("/health/"), False),
    ("exact-root", RouteMatcher(path="/"), FakeRequest("/"), True),
    ("regex-full-hit", RouteMatcher(path_regex=ORDERS), FakeRequest("/api/orders/42"), True),
    ("regex-partial-miss", RouteMatcher(path_regex=ORDERS), FakeRequest("/api/orders/42/x"), False),
    ("no-path-condition", RouteMatcher(), FakeRequest("/whatever"), True),
    (
        "method-in",
        RouteMatcher(methods=frozenset({"GET", "HEAD"})),
        FakeRequest(method="HEAD"),
        True,
    ),
    ("method-out", RouteMatcher(methods=frozenset({"GET"})), FakeRequest(method="POST"), False),
    ("host-exact", RouteMatcher(hosts=("shop.example.com",)), FakeRequest(), True),
    (
        "host-port-stripped",
        RouteMatcher(hosts=("shop.example.com",)),
        FakeRequest(host="shop.example.com:8080"),
        True,
    ),
    (
        "host-case-folded",
        RouteMatcher(hosts=("shop.example.com",)),
        FakeRequest(host="Shop.Example.COM"),
        True,
    ),
    ("host-other", RouteMatcher(hosts=("api.example.com",)), FakeRequest(), False),
    ("host-missing", RouteMatcher(hosts=("shop.example.com",)), FakeRequest(host=None), False),
    ("host-wildcard-one-label", RouteMatcher(hosts=("*.example.com",)), FakeRequest(), True),
    (
        "host-wildcard-two-labels",
        RouteMatcher(hosts=("*.example.com",)),
        FakeRequest(host="a.b.example.com:443"),
        True,
    ),
    (
        "host-wildcard-not-apex",
        RouteMatcher(hosts=("*.example.com",)),
        FakeRequest(host="example.com"),
        False,
    ),
    (
        "host-wildcard-not-suffix-only",
        RouteMatcher(hosts=("*.example.com",)),
        FakeRequest(host="badexample.com"),
        False,
    ),
    ("host-ipv6-port", RouteMatcher(hosts=("[::1]",)), FakeRequest(host="[::1]:8080"), True),
    (
        "header-present",
        RouteMatcher(headers=(("x-beta", None),)),
        FakeRequest(headers={"x-beta": "anything"}),
        True,
    ),
    ("header-missing", RouteMatcher(headers=(("x-beta", None),)), FakeRequest(), False),
    (
        "header-value-hit",
        RouteMatcher(headers=(("x-beta", "1"),)),
        FakeRequest(headers={"x-beta": "1"}),
        True,
    ),
    (
        "header-value-miss",
        RouteMatcher(headers=(("x-beta", "1"),)),
        FakeRequest(headers={"x-beta": "0"}),
        False,
    ),
    (
        "cookie-present",
        RouteMatcher(cookies=(("canary", None),)),
        FakeRequest(cookies={"canary": ""}),
        True,
    ),
    ("cookie-missing", RouteMatcher(cookies=(("canary", None),)), FakeRequest(), False),
    (
        "cookie-value-miss",
        RouteMatcher(cookies=(("canary", "orders"),)),
        FakeRequest(cookies={"canary": "legacy"}),
        False,
    ),
    (
        "all-conditions",
        RouteMatcher(
            path_prefix="/api",
            methods=frozenset({"POST"}),
            hosts=("*.example.com",),
            headers=(("x-beta", "1"),),
            cookies=(("canary", None),),
        ),
        FakeRequest("/api/x", "POST", headers={"x-beta": "1"}, cookies={"canary": "y"}),
        True,
    ),
]


@pytest.mark.parametrize(
    ("matcher", "req", "accepted"),
    [c[1:] for c in MATCHER_CASES],
    ids=[c[0] for c in MATCHER_CASES],
)
def test_matcher_conditions(matcher: RouteMatcher, req: FakeRequest, accepted: bool) -> None:
    found = single(matcher).match(_facts(req))
    assert (found.entry is not None) is accepted


BAD_MATCHERS = [
    ("two-path-conditions", {"path_prefix": "/a", "path": "/a"}),
    ("prefix-and-regex", {"path_prefix": "/a", "path_regex": ORDERS}),
    ("relative-prefix", {"path_prefix": "api"}),
    ("relative-path", {"path": "api"}),
    ("lower-method", {"methods": frozenset({"get"})}),
    ("upper-host", {"hosts": ("Example.com",)}),
    ("host-with-port", {"hosts": ("example.com:80",)}),
    ("upper-header", {"headers": (("X-Beta", None),)}),
]


@pytest.mark.parametrize(
    "conditions", [c[1] for c in BAD_MATCHERS], ids=[c[0] for c in BAD_MATCHERS]
)
def test_matcher_rejects_bad_conditions(conditions: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RouteMatcher(**conditions)


ORDERED_ROUTES = [
    entry("catch-regex", path_regex=re.compile(r"/api/special/.*")),
    entry("orders-post", path_prefix="/api/orders", methods=frozenset({"POST"})),
    entry("orders", path_prefix="/api/orders"),
    entry("orders-7", path="/api/orders/7"),
    entry("api", path_prefix="/api"),
    entry("beta", headers=(("x-beta", None),)),
    entry("special", path_prefix="/api/special"),
    entry("health-get", path="/health", methods=frozenset({"GET"})),
]
DEFAULT = entry("legacy")

ORDER_CASES = [
    ("first-prefix-wins-over-later-exact", FakeRequest("/api/orders/7"), "orders"),
    ("method-specific-first", FakeRequest("/api/orders/7", "POST"), "orders-post"),
    ("shorter-prefix", FakeRequest("/api/customers"), "api"),
    ("dot-dot-routed-after-normalisation", FakeRequest("/api/admin"), "api"),
    ("earlier-regex-beats-later-prefix", FakeRequest("/api/special/x"), "catch-regex"),
    ("regex-miss-falls-to-prefix", FakeRequest("/api/special"), "api"),
    ("unindexed-header-route", FakeRequest("/other", headers={"x-beta": "1"}), "beta"),
    ("default", FakeRequest("/other"), "legacy"),
    ("exact-with-method", FakeRequest("/health"), "health-get"),
    ("not-segment-prefix", FakeRequest("/apix"), "legacy"),
]


@pytest.mark.parametrize(
    ("req", "name"), [c[1:] for c in ORDER_CASES], ids=[c[0] for c in ORDER_CASES]
)
def test_first_route_in_declared_order_wins(req: FakeRequest, name: str) -> None:
    table = RouteTable.build(ORDERED_ROUTES, default=DEFAULT)
    found = table.match(req)
    assert found.entry is not None
    assert found.entry.name == name
    assert found.entry.payload == f"payload-{name}"


def test_match_reports_prefix_for_rewrites() -> None:
    table = RouteTable.build(ORDERED_ROUTES, default=DEFAULT)
    assert table.match(FakeRequest("/api/orders/7")).prefix == "/api/orders"
    assert table.match(FakeRequest("/health")).prefix is None
    assert table.match(FakeRequest("/other")).prefix is None


METHOD_MISMATCH_CASES = [
    # (id, default, request, expected entry name, method_mismatch)
    ("405-without-default", None, FakeRequest("/health", "DELETE"), None, True),
    ("404-without-default", None, FakeRequest("/nowhere"), None, False),
    ("default-still-flags", DEFAULT, FakeRequest("/health", "DELETE"), "legacy", True),
    ("default-no-mismatch", DEFAULT, FakeRequest("/nowhere"), "legacy", False),
    ("match-no-flag", None, FakeRequest("/health", "GET"), "health-get", False),
]


@pytest.mark.parametrize(
    ("default", "req", "name", "mismatch"),
    [c[1:] for c in METHOD_MISMATCH_CASES],
    ids=[c[0] for c in METHOD_MISMATCH_CASES],
)
def test_method_mismatch(
    default: RouteEntry[str] | None, req: FakeRequest, name: str | None, mismatch: bool
) -> None:
    routes = [entry("health-get", path="/health", methods=frozenset({"GET"}))]
    found = RouteTable.build(routes, default=default).match(req)
    assert (found.entry.name if found.entry else None) == name
    assert found.method_mismatch is mismatch


def test_default_route_conditions_apply() -> None:
    default = entry("legacy", hosts=("shop.example.com",))
    table = RouteTable.build([], default=default)
    assert table.match(FakeRequest("/x")).entry == default
    none = table.match(FakeRequest("/x", host="other.example.com"))
    assert (none.entry, none.method_mismatch, none.prefix) == (None, False, None)


EXPLAIN_TABLE = [
    entry("orders", path_prefix="/api/orders", methods=frozenset({"GET"})),
    entry("beta", path_prefix="/api", headers=(("x-beta", "1"),)),
    entry("canary", path_prefix="/api", cookies=(("canary", None),)),
    entry("tenant", hosts=("tenant.example.com",)),
    entry("health", path="/health"),
    entry("api", path_prefix="/api"),
]


def test_explain_gives_one_reason_per_route() -> None:
    table = RouteTable.build(EXPLAIN_TABLE, default=entry("legacy"))
    rows = table.explain(FakeRequest("/api/orders/7", "POST", headers={"x-beta": "0"}))
    assert rows == [
        ("orders", False, "method POST not in [GET]"),
        ("beta", False, "header x-beta is '0', not '1'"),
        ("canary", False, "cookie canary missing"),
        ("tenant", False, "host shop.example.com not in [tenant.example.com]"),
        ("health", False, "path /health did not match /api/orders/7"),
        ("api", True, "path prefix /api matched"),
        ("legacy", False, "default route: not used: an earlier route matched"),
    ]


def test_explain_describes_matched_conditions_and_default() -> None:
    table = RouteTable.build(EXPLAIN_TABLE[:1], default=entry("legacy"))
    accepted = table.explain(FakeRequest("/api/orders", "GET"))
    assert accepted[0] == ("orders", True, "path prefix /api/orders matched, method GET allowed")
    assert accepted[1] == ("legacy", False, "default route: not used: an earlier route matched")
    fallback = table.explain(FakeRequest("/x", host=None, headers={"x-beta": "1"}))
    assert fallback[1] == ("legacy", True, "default route: any path matched")


def test_explain_header_missing() -> None:
    rows = RouteTable.build(EXPLAIN_TABLE[1:2], default=None).explain(FakeRequest("/api"))
    assert rows == [("beta", False, "header x-beta missing")]


def m(**conditions: Any) -> RouteMatcher:
    return RouteMatcher(**conditions)


SHADOW_CASES = [
    # (id, earlier, later, shadowed)
    ("prefix-covers-sub-prefix", m(path_prefix="/api"), m(path_prefix="/api/orders"), True),
    ("prefix-covers-same", m(path_prefix="/api"), m(path_prefix="/api"), True),
    ("prefix-covers-exact", m(path_prefix="/api"), m(path="/api/orders/7"), True),
    ("prefix-covers-exact-itself", m(path_prefix="/api"), m(path="/api"), True),
    ("prefix-not-segment", m(path_prefix="/api"), m(path_prefix="/apix"), False),
    ("sub-prefix-not-parent", m(path_prefix="/api/orders"), m(path_prefix="/api"), False),
    ("slash-prefix-not-bare", m(path_prefix="/api/"), m(path_prefix="/api"), False),
    ("slash-prefix-covers-child", m(path_prefix="/api/"), m(path_prefix="/api/orders"), True),
    ("bare-covers-slash-prefix", m(path_prefix="/api"), m(path_prefix="/api/"), True),
    ("root-prefix-covers-all", m(path_prefix="/"), m(path_regex=ORDERS), True),
    ("no-path-covers-regex", m(), m(path_regex=ORDERS), True),
    ("prefix-never-judged-over-regex", m(path_prefix="/api"), m(path_regex=ORDERS), False),
    ("regex-covers-matching-exact", m(path_regex=ORDERS), m(path="/api/orders/7"), True),
    ("regex-not-other-exact", m(path_regex=ORDERS), m(path="/api/orders/x"), False),
    ("regex-never-covers-prefix", m(path_regex=re.compile(r"/.*")), m(path_prefix="/a"), False),
    ("exact-covers-same-exact", m(path="/a"), m(path="/a"), True),
    ("exact-not-prefix", m(path="/a"), m(path_prefix="/a"), False),
    ("prefix-not-no-path", m(path_prefix="/a"), m(), False),
    (
        "methods-superset",
        m(methods=frozenset({"GET", "POST"})),
        m(methods=frozenset({"GET"})),
        True,
    ),
    ("methods-any-covers", m(), m(methods=frozenset({"GET"})), True),
    ("methods-not-subset", m(methods=frozenset({"GET"})), m(methods=frozenset({"POST"})), False),
    ("methods-restricted-vs-any", m(methods=frozenset({"GET"})), m(), False),
    ("hosts-any-covers", m(), m(hosts=("a.example.com",)), True),
    ("hosts-superset", m(hosts=("a.com", "b.com")), m(hosts=("a.com",)), True),
    ("hosts-wildcard-covers-exact", m(hosts=("*.example.com",)), m(hosts=("a.example.com",)), True),
    (
        "hosts-wildcard-covers-deeper-wildcard",
        m(hosts=("*.example.com",)),
        m(hosts=("*.a.example.com",)),
        True,
    ),
    ("hosts-exact-not-wildcard", m(hosts=("a.example.com",)), m(hosts=("*.example.com",)), False),
    ("hosts-restricted-vs-any", m(hosts=("a.com",)), m(), False),
    ("header-subset", m(headers=(("x-a", None),)), m(headers=(("x-a", "1"), ("x-b", None))), True),
    ("header-value-equal", m(headers=(("x-a", "1"),)), m(headers=(("x-a", "1"),)), True),
    ("header-value-differs", m(headers=(("x-a", "1"),)), m(headers=(("x-a", "2"),)), False),
    ("header-value-vs-present", m(headers=(("x-a", "1"),)), m(headers=(("x-a", None),)), False),
    ("header-extra-on-earlier", m(headers=(("x-a", None),)), m(), False),
    ("cookie-subset", m(), m(cookies=(("c", "1"),)), True),
    ("cookie-extra-on-earlier", m(cookies=(("c", None),)), m(path="/a"), False),
]


@pytest.mark.parametrize(
    ("earlier", "later", "shadowed"),
    [c[1:] for c in SHADOW_CASES],
    ids=[c[0] for c in SHADOW_CASES],
)
def test_unreachable_route_detection(
    earlier: RouteMatcher, later: RouteMatcher, shadowed: bool
) -> None:
    entries = [RouteEntry("earlier", earlier, 0), RouteEntry("later", later, 1)]
    assert unreachable_routes(entries) == ([(1, 0)] if shadowed else [])


def test_unreachable_reports_earliest_shadowing_route() -> None:
    entries = [
        RouteEntry("orders", m(path_prefix="/api/orders"), 0),
        RouteEntry("api", m(path_prefix="/api"), 1),
        RouteEntry("api-again", m(path_prefix="/api"), 2),
        RouteEntry("order-7", m(path="/api/orders/7"), 3),
    ]
    assert unreachable_routes(entries) == [(2, 1), (3, 0)]


REWRITE_CASES = [
    # (id, path, prefix, strip, replace, expected)
    ("strip", "/api/orders/7", "/api/orders", True, None, "/7"),
    ("strip-whole", "/api/orders", "/api/orders", True, None, "/"),
    ("strip-keeps-trailing", "/api/orders/", "/api/orders", True, None, "/"),
    ("strip-slash-prefix", "/api/orders/7", "/api/orders/", True, None, "/7"),
    ("strip-root-prefix", "/a/b", "/", True, None, "/a/b"),
    ("replace", "/api/orders/7", "/api/orders", False, "/v2/orders", "/v2/orders/7"),
    ("replace-whole", "/api/orders", "/api/orders", False, "/v2/orders", "/v2/orders"),
    ("replace-with-slash", "/api/orders/7", "/api/orders", False, "/v2/", "/v2/7"),
    ("replace-with-root", "/api/orders/7", "/api/orders", False, "/", "/7"),
    ("replace-relative", "/api/orders/7", "/api/orders", False, "v2", "/v2/7"),
    ("replace-root-prefix", "/a", "/", False, "/legacy", "/legacy/a"),
    ("no-rewrite", "/api/orders/7", "/api/orders", False, None, "/api/orders/7"),
    ("no-prefix", "/api/orders/7", None, True, None, "/api/orders/7"),
]


@pytest.mark.parametrize(
    ("path", "prefix", "strip", "replace", "expected"),
    [c[1:] for c in REWRITE_CASES],
    ids=[c[0] for c in REWRITE_CASES],
)
def test_rewrite_path(
    path: str, prefix: str | None, strip: bool, replace: str | None, expected: str
) -> None:
    assert rewrite_path(path, prefix, strip_prefix=strip, replace_prefix=replace) == expected


@pytest.mark.parametrize(
    ("path", "prefix", "strip", "replace"),
    [("/other", "/api", True, None), ("/api/x", "/api", True, "/v2")],
    ids=["path-not-under-prefix", "strip-and-replace"],
)
def test_rewrite_path_rejects_misuse(
    path: str, prefix: str, strip: bool, replace: str | None
) -> None:
    with pytest.raises(ValueError):
        rewrite_path(path, prefix, strip_prefix=strip, replace_prefix=replace)


def thousand_routes() -> list[RouteEntry[int]]:
    routes: list[RouteEntry[int]] = [
        RouteEntry("beta", RouteMatcher(headers=(("x-beta", "1"),)), -1),
        RouteEntry("legacy-reports", RouteMatcher(path_regex=re.compile(r"/reports/\d+")), -2),
    ]
    for number in range(998):
        service = f"/svc{number % 100}"
        if number % 3 == 0:
            matcher = RouteMatcher(path=f"{service}/items/{number}")
        elif number % 3 == 1:
            matcher = RouteMatcher(
                path_prefix=f"{service}/res{number}", methods=frozenset({"GET", "POST"})
            )
        else:
            matcher = RouteMatcher(path_prefix=f"{service}/res{number}", hosts=("*.example.com",))
        routes.append(RouteEntry(f"route-{number}", matcher, number))
    return routes


def test_thousand_routes_match_like_a_linear_scan() -> None:
    routes = thousand_routes()
    table = RouteTable.build(routes, default=None)
    one_route_tables = [(route, single(route.matcher)) for route in routes]
    requests = [FakeRequest(f"/svc{n % 100}/res{n}/x", "GET") for n in range(1, 998, 11)]
    requests += [FakeRequest(f"/svc{n % 100}/res{n}", host="a.example.com") for n in (2, 998)]
    requests += [FakeRequest(f"/svc{n % 100}/res{n}", host="example.com") for n in (5, 8)]
    requests += [FakeRequest(f"/svc{n % 100}/items/{n}") for n in range(0, 998, 27)]
    requests += [FakeRequest("/reports/12"), FakeRequest("/svc1/x", headers={"x-beta": "1"})]
    requests += [FakeRequest("/svc1/res1", "DELETE"), FakeRequest("/svc1"), FakeRequest("/")]
    for req in requests:
        linear = next((r for r, t in one_route_tables if t.match(req).entry is not None), None)
        assert table.match(req).entry == linear, req.path


def test_benchmark_match_thousand_routes(benchmark: Any) -> None:
    table = RouteTable.build(thousand_routes(), default=RouteEntry("legacy", RouteMatcher(), 0))
    req = FakeRequest("/svc97/res997/orders/7", "GET")
    found = benchmark(table.match, req)
    assert found.entry is not None
    assert found.entry.name == "route-997"


REGEX_DIRECTORY_CASES = [
    # (id, pattern, flags, expected directory or None)
    ("anchored-literal-dir", r"^/api/orders/\d+$", 0, "/api/orders"),
    ("unanchored", r"/api/orders/\d+", 0, "/api/orders"),
    ("group-after-dir", r"^/api/(orders|carts)/\d+", 0, None),  # alternation: never indexed
    ("group-no-alternation", r"^/api/(orders)/\d+", 0, "/api"),
    ("optional-slash", r"^/api/orders/?\d*", 0, "/api"),
    ("optional-last-char", r"^/api/ordersx?/1", 0, "/api"),
    ("dot-is-special", r"^/a.i/orders/\d+", 0, None),
    ("class", r"^/api/[a-z]+/\d+", 0, "/api"),
    ("escaped-slash", r"^/api\/orders/\d+", 0, None),
    ("root-only", r"^/health$", 0, None),
    ("no-leading-slash", r"^api/orders/\d+", 0, None),
    ("ignorecase", r"^/api/orders/\d+", re.IGNORECASE, None),
    ("inline-ignorecase", r"(?i)^/api/orders/\d+", 0, None),
    ("verbose", r"^/api/orders/ \d+", re.VERBOSE, None),
    ("repeat-brace", r"^/api/orders/x{2}/1", 0, "/api/orders"),
]


@pytest.mark.parametrize(
    ("pattern", "flags", "expected"),
    [case[1:] for case in REGEX_DIRECTORY_CASES],
    ids=[case[0] for case in REGEX_DIRECTORY_CASES],
)
def test_regex_directory(pattern: str, flags: int, expected: str | None) -> None:
    assert regex_directory(re.compile(pattern, flags)) == expected


def test_indexed_regex_routes_keep_declared_order_and_match_like_a_linear_scan() -> None:
    routes = [
        RouteEntry("orders-by-id", RouteMatcher(path_regex=re.compile(r"^/api/orders/\d+$")), 1),
        RouteEntry("opt-slash", RouteMatcher(path_regex=re.compile(r"^/api/items/?\d*")), 2),
        RouteEntry("api", RouteMatcher(path_prefix="/api"), 3),
        RouteEntry("alt", RouteMatcher(path_regex=re.compile(r"^/(x|y)/\d+")), 4),
        RouteEntry("cases", RouteMatcher(path_regex=re.compile(r"(?i)^/CASE/\d+")), 5),
        RouteEntry("other", RouteMatcher(path_prefix="/"), 6),
    ]
    table = RouteTable.build(routes, default=None)
    one_route_tables = [(route, single(route.matcher)) for route in routes]
    paths = [
        "/api/orders/7",
        "/api/orders/x",
        "/api/orders",
        "/api/ordersX/7",
        "/api/items",
        "/api/items7",
        "/api/items/7",
        "/api",
        "/x/1",
        "/y/2",
        "/z/3",
        "/case/9",
        "/CASE/9",
        "/Case/1",
        "/",
        "/api/orders/7/8",
    ]
    for path in paths:
        req = FakeRequest(path)
        linear = next((r for r, t in one_route_tables if t.match(req).entry is not None), None)
        assert table.match(req).entry == linear, path


def chosen(table: RouteTable[str], req: FakeRequest) -> str | None:
    """The route `table.match` picks, checked against the full decision."""
    found = table.match(req)
    assert found is table.match_uncached(req) or found.entry is None
    return None if found.entry is None else found.entry.name


def test_answers_that_depend_on_path_and_method_alone_are_remembered() -> None:
    table = RouteTable.build(
        [
            entry("orders-get", path_prefix="/api/orders", methods=frozenset({"GET"})),
            entry("beta", path_prefix="/api/beta", headers=(("x-beta", "1"),)),
            entry("beta-all", path_prefix="/api/beta"),
        ],
        default=RouteEntry("legacy", RouteMatcher(), "legacy"),
    )
    for _ in range(3):
        assert chosen(table, FakeRequest("/api/orders/7")) == "orders-get"
        # The method is part of the key: a POST falls through to the default.
        assert chosen(table, FakeRequest("/api/orders/7", method="POST")) == "legacy"
    assert table._cached == 2  # two (method, path) answers, each computed once
    # A header condition among the candidates: never remembered, decided per request.
    beta = FakeRequest("/api/beta/x", headers={"x-beta": "1"})
    plain = FakeRequest("/api/beta/x")
    for _ in range(2):
        assert chosen(table, beta) == "beta"
        assert chosen(table, plain) == "beta-all"
    assert table._cached == 2


def test_the_remembered_answers_stay_bounded() -> None:
    table = RouteTable.build([entry("orders", path_prefix="/api/orders")], default=None)
    for number in range(5000):
        assert chosen(table, FakeRequest(f"/api/orders/{number}")) == "orders"
    assert 0 < table._cached <= 4096
    assert chosen(table, FakeRequest("/api/orders/" + "x" * 300)) == "orders"
    before = table._cached
    assert chosen(table, FakeRequest("/api/orders/" + "x" * 300)) == "orders"
    assert table._cached == before  # long paths are decided each time, never kept
