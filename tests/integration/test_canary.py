"""Canary stage end to end (issue 6): sticky weighted split, reloads, cookies, overrides, progress.

Two echo backends (`legacy`, `orders`) on loopback answer with their own name and the headers they
received, so each response tells which side served it. The expected side of a key is also computed
with the pure engine (`bucket_of` + `WeightedSplit`) to check the proxy uses it as documented.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from strangler.split import WeightedSplit, bucket_of
from tests.harness import ProxyHandle, echo_app, render_config, start_app

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
ROUTE = "orders"
STICKY_HEADER = "sticky: {header: X-User-Id}"
SECRET_ENV = "CANARY_TEST_OVERRIDE_SECRET"


@dataclass(frozen=True)
class Backends:
    legacy: int
    orders: int


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    async with AsyncExitStack() as stack:
        ports = []
        for name in ("legacy", "orders"):
            runner, port = await start_app(echo_app(name))
            stack.push_async_callback(runner.cleanup)
            ports.append(port)
        yield Backends(*ports)


def canary_yaml(ports: Backends, weight: float, split_extra: str = STICKY_HEADER) -> str:
    extra = "\n".join("      " + line for line in split_extra.strip().splitlines())
    return (
        render_config(
            """
            upstreams:
              legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
              orders: {url: "http://127.0.0.1:{orders}", role: extracted}
            routes:
              - name: orders
                match: {path_prefix: /api/orders}
                upstream: legacy
                split:
                  targets:
                    - {upstream: orders, weight: {weight}}
                    - {upstream: legacy, weight: {rest}}
            """,
            legacy=ports.legacy,
            orders=ports.orders,
        )
        .replace("{weight}", f"{weight:g}")
        .replace("{rest}", f"{100 - weight:g}")
        + extra
        + "\ndefault: {upstream: legacy}\n"
    )


def expected_side(user: str, weight: float) -> str:
    return WeightedSplit((("orders", weight), ("legacy", 100 - weight))).choose(bucket_of(user))


async def served_by(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
        data["set_cookie"] = resp.headers.getall("Set-Cookie", [])
        return data


async def sides_of(
    handle: ProxyHandle, users: Iterable[str], path: str = "/api/orders/1"
) -> dict[str, str]:
    """Which upstream served each user (by X-User-Id), 50 requests at a time."""
    users = list(users)
    out: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(users), 50):
            batch = users[start : start + 50]
            answers = await asyncio.gather(
                *(served_by(session, handle.url(path), {"X-User-Id": u}) for u in batch)
            )
            out.update((u, a["upstream"]) for u, a in zip(batch, answers, strict=True))
    return out


def share(sides: dict[str, str]) -> float:
    return 100 * sum(side == "orders" for side in sides.values()) / len(sides)


async def admin_json(handle: ProxyHandle, path: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(handle.admin_url(path)) as resp:
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
        return data


def route_entry(data: dict[str, Any], name: str = ROUTE) -> dict[str, Any]:
    (entry,) = [r for r in data["routes"] if r.get("name", r.get("route")) == name]
    found: dict[str, Any] = entry
    return found


# ---- stickiness and share --------------------------------------------------------------


async def test_same_user_always_same_upstream_and_share_follows_weight(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    handle = await proxy_factory(canary_yaml(backends, 20))
    users = [f"user-{n}" for n in range(2000)]

    first = await sides_of(handle, users)
    assert 17.0 <= share(first) <= 23.0
    assert first == {u: expected_side(u, 20) for u in users}

    again = users[:150] + [u for u in users[150:] if first[u] == "orders"][:150]
    for _ in range(2):
        assert await sides_of(handle, again, "/api/orders/other") == {u: first[u] for u in again}

    entry = route_entry(await admin_json(handle, "/admin/routes"))
    assert entry["stage"] == "canary"
    assert entry["configured_extracted_weight"] == 20
    total = len(users) + 2 * len(again)
    assert entry["requests_window"] == total
    extracted = sum(first[u] == "orders" for u in users + again + again)
    observed = 100 * extracted / total
    assert entry["observed_extracted_share"] == pytest.approx(observed, abs=0.01)


async def test_raising_weight_keeps_every_extracted_user_extracted(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    handle = await proxy_factory(canary_yaml(backends, 10))
    users = [f"customer-{n}" for n in range(1000)]
    at_10 = await sides_of(handle, users)
    assert 7.0 <= share(at_10) <= 13.0
    assert handle.metric("strangler_route_extracted_weight", route=ROUTE) == 10

    handle.config_path.write_text(
        handle.config_path.read_text()
        .replace("weight: 10}", "weight: 50}")
        .replace("weight: 90}", "weight: 50}")
    )
    result = await handle.proxy.reload()
    assert result.ok and result.changed, result
    assert handle.metric("strangler_route_extracted_weight", route=ROUTE) == 50

    at_50 = await sides_of(handle, users)
    assert 46.0 <= share(at_50) <= 54.0
    moved_back = [u for u in users if at_10[u] == "orders" and at_50[u] != "orders"]
    assert moved_back == []
    assert at_50 == {u: expected_side(u, 50) for u in users}


# ---- bucket cookie ---------------------------------------------------------------------


async def test_set_cookie_gives_a_bucket_and_the_client_stays_on_its_side(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    sticky = "sticky: {cookie: strangler_bucket, set_cookie: strangler_bucket, cookie_max_age: 1d}"
    handle = await proxy_factory(canary_yaml(backends, 50, sticky))
    sides: set[str] = set()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        for _ in range(30):
            fresh = await served_by(session, handle.url("/api/orders/1"))
            (cookie,) = fresh["set_cookie"]
            name_value, *attributes = [part.strip() for part in cookie.split(";")]
            name, _, value = name_value.partition("=")
            assert name == "strangler_bucket" and len(value) >= 16
            assert {"Path=/", "Max-Age=86400", "HttpOnly"} <= set(attributes)
            assert fresh["upstream"] == expected_side(value, 50)
            sides.add(fresh["upstream"])
            for _ in range(3):
                back = await served_by(
                    session, handle.url("/api/orders/2"), {"Cookie": f"strangler_bucket={value}"}
                )
                assert (back["upstream"], back["set_cookie"]) == (fresh["upstream"], [])
    assert sides == {"legacy", "orders"}  # 30 fresh clients at 50%: both sides are used


# ---- override ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OverrideCase:
    id: str
    secret: str | None  # the value of the secret env var; None: no secret configured
    user_side: str  # the side the user's bucket maps to
    sent: dict[str, str]  # override header or cookie sent by the client
    served: str  # "normal" for the user's own side, otherwise the forced upstream


OVERRIDE_CASES = [
    OverrideCase(
        "right_secret_forces_extracted",
        "s3cret",
        "legacy",
        {"X-Strangler-Upstream": "orders:s3cret"},
        "orders",
    ),
    OverrideCase(
        "right_secret_forces_legacy",
        "s3cret",
        "orders",
        {"X-Strangler-Upstream": "legacy:s3cret"},
        "legacy",
    ),
    OverrideCase(
        "wrong_secret_ignored",
        "s3cret",
        "legacy",
        {"X-Strangler-Upstream": "orders:nope"},
        "normal",
    ),
    OverrideCase(
        "missing_secret_ignored", "s3cret", "legacy", {"X-Strangler-Upstream": "orders"}, "normal"
    ),
    OverrideCase(
        "unknown_upstream_ignored",
        "s3cret",
        "legacy",
        {"X-Strangler-Upstream": "payments:s3cret"},
        "normal",
    ),
    OverrideCase(
        "no_secret_configured_plain_name_forces",
        None,
        "legacy",
        {"X-Strangler-Upstream": "orders"},
        "orders",
    ),
    OverrideCase(
        "cookie_with_right_secret_forces",
        "s3cret",
        "legacy",
        {"Cookie": "strangler_upstream=orders:s3cret"},
        "orders",
    ),
    OverrideCase(
        "cookie_among_others_forces_and_only_it_is_removed",
        "s3cret",
        "legacy",
        {"Cookie": "a=1; strangler_upstream=orders:s3cret; b=2"},
        "orders",
    ),
]


@pytest.mark.parametrize("case", OVERRIDE_CASES, ids=[c.id for c in OVERRIDE_CASES])
async def test_override_forces_a_side_only_with_the_secret_and_is_not_forwarded(
    proxy_factory: ProxyFactory,
    backends: Backends,
    monkeypatch: pytest.MonkeyPatch,
    case: OverrideCase,
) -> None:
    if case.secret is None:
        monkeypatch.delenv(SECRET_ENV, raising=False)
    else:
        monkeypatch.setenv(SECRET_ENV, case.secret)
    override = (
        f"override: {{header: X-Strangler-Upstream, cookie: strangler_upstream, "
        f"secret_env: {SECRET_ENV}}}"
    )
    handle = await proxy_factory(canary_yaml(backends, 20, STICKY_HEADER + "\n" + override))
    user = next(u for n in range(1000) if expected_side(u := f"tester-{n}", 20) == case.user_side)

    async with aiohttp.ClientSession() as session:
        answer = await served_by(
            session, handle.url("/api/orders/1"), {"X-User-Id": user, **case.sent}
        )
    expected = case.user_side if case.served == "normal" else case.served
    assert answer["upstream"] == expected
    forwarded = {name.lower(): value for name, value in answer["headers"]}
    assert "x-strangler-upstream" not in forwarded
    # The secret never travels upstream, in the header or in the Cookie header.
    assert "s3cret" not in str(answer["headers"])
    assert "strangler_upstream" not in forwarded.get("cookie", "")
    if case.sent.get("Cookie", "").startswith("a=1"):
        assert forwarded["cookie"] == "a=1; b=2"
    assert forwarded["x-user-id"] == user


# ---- metrics, admin API, progress ------------------------------------------------------


async def test_stage_and_weight_metrics_and_legacy_path_templates(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    handle = await proxy_factory(canary_yaml(backends, 20))
    stages = {
        stage: handle.metric("strangler_route_stage", route=ROUTE, stage=stage)
        for stage in ("legacy", "shadow", "canary", "migrated", "retired")
    }
    assert stages == {"legacy": 0, "shadow": 0, "canary": 1, "migrated": 0, "retired": 0}
    assert handle.metric("strangler_route_extracted_weight", route=ROUTE) == 20
    assert handle.metric("strangler_route_stage", route="default", stage="legacy") == 1
    assert handle.metric("strangler_route_extracted_weight", route="default") == 0

    legacy_users = [u for n in range(200) if expected_side(u := f"p-{n}", 20) == "legacy"][:12]
    orders_users = [u for n in range(200) if expected_side(u := f"p-{n}", 20) == "orders"][:4]
    paths = ["/api/orders/17", "/api/orders/123/items", "/api/orders/search"]
    for path in paths:
        assert set((await sides_of(handle, legacy_users, path)).values()) == {"legacy"}
        assert set((await sides_of(handle, orders_users, path)).values()) == {"orders"}

    progress = route_entry(await admin_json(handle, "/admin/progress"))
    assert progress["stage"] == "canary"
    assert progress["observed_extracted_share"] == pytest.approx(100 * 4 / 16)
    assert progress["legacy_paths"] == [
        {"template": "/api/orders/search", "requests": 12},
        {"template": "/api/orders/{id}", "requests": 12},
        {"template": "/api/orders/{id}/items", "requests": 12},
    ]
    routes = await admin_json(handle, "/admin/routes")
    entry = route_entry(routes)
    assert (entry["stage"], entry["configured_extracted_weight"]) == ("canary", 20)
    assert entry["split"] == [
        {"upstream": "orders", "weight": 20},
        {"upstream": "legacy", "weight": 80},
    ]
    assert entry["observed_extracted_share"] == pytest.approx(25.0)
