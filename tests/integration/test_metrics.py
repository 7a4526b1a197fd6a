"""Prometheus metrics after known traffic through a real proxy (issue 7).

Backends are real aiohttp apps on loopback: `legacy` answers with the status asked for in
`?status=`, `orders` answers a JSON body that differs from legacy's (so shadowing mismatches), and
`dead` is a port nobody listens on (connection refused). Values are read from the proxy's
registry and, for the exposition format, from `/metrics` over HTTP, checked by `promtool check
metrics`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from textwrap import dedent

import aiohttp
import pytest
from aiohttp import web

from strangler import __version__
from tests.harness import ProxyHandle, free_port, start_app

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Backends:
    legacy: int
    orders: int
    dead: int


def _legacy_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "200"))
        return web.json_response({"served_by": "legacy", "total": 10}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def _orders_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"served_by": "orders", "total": 12})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    legacy_runner, legacy = await start_app(_legacy_app())
    orders_runner, orders = await start_app(_orders_app())
    yield Backends(legacy=legacy, orders=orders, dead=free_port())
    await legacy_runner.cleanup()
    await orders_runner.cleanup()


def _config(b: Backends, *, canary_weight: int = 25, extra_route: str = "") -> str:
    return f"""
    upstreams:
      legacy: {{url: http://127.0.0.1:{b.legacy}, role: legacy}}
      orders: {{url: http://127.0.0.1:{b.orders}, role: extracted}}
      dead: {{url: http://127.0.0.1:{b.dead}, role: extracted, connect_timeout: 500ms}}
    routes:
      - name: catalog
        match: {{path_prefix: /api/catalog}}
        upstream: legacy
      - name: payments
        stage: migrated
        match: {{path_prefix: /api/payments}}
        upstream: dead
        fallback: {{upstream: legacy}}
      - name: broken
        match: {{path_prefix: /api/broken}}
        upstream: dead
        breaker: {{consecutive_failures: 2, open_duration: 60s}}
      - name: lookups
        match: {{path_prefix: /api/lookups}}
        upstream: legacy
        shadow: {{upstream: orders, percent: 100}}
      - name: checkout
        match: {{path_prefix: /api/checkout}}
        upstream: legacy
        split:
          targets:
            - {{upstream: orders, weight: {canary_weight}}}
            - {{upstream: legacy, weight: {100 - canary_weight}}}
          sticky: {{header: X-User}}
    {extra_route}
    """


async def _get(session: aiohttp.ClientSession, url: str, method: str = "GET") -> int:
    async with session.request(method, url) as response:
        await response.read()
        return response.status


async def _eventually(check: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _samples(handle: ProxyHandle, name: str) -> dict[Labels, float]:
    """Every sample called `name`, keyed by its sorted labels (zero-valued ones dropped)."""
    out = {}
    for family in handle.proxy.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.value:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _labels(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


async def test_requests_counted_by_route_upstream_role_method_and_code(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    proxy = await proxy_factory(_config(backends))
    async with aiohttp.ClientSession() as session:
        for path, method, expected in [
            ("/api/catalog/1", "GET", 200),
            ("/api/catalog/2", "GET", 200),
            ("/api/catalog/3", "POST", 200),
            ("/api/catalog/missing?status=404", "GET", 404),
            ("/api/catalog/dav", "PROPFIND", 200),
            ("/api/broken/1", "GET", 502),
            ("/nowhere", "GET", 404),  # no route and no default route: the proxy answers itself
        ]:
            assert await _get(session, proxy.url(path), method) == expected, path

    def requests(route: str, upstream: str, role: str, method: str, code: str) -> Labels:
        return _labels(route=route, upstream=upstream, role=role, method=method, code=code)

    assert _samples(proxy, "strangler_requests_total") == {
        requests("catalog", "legacy", "legacy", "GET", "200"): 2.0,
        requests("catalog", "legacy", "legacy", "POST", "200"): 1.0,
        requests("catalog", "legacy", "legacy", "GET", "404"): 1.0,
        requests("catalog", "legacy", "legacy", "OTHER", "200"): 1.0,  # unknown methods fold
        requests("broken", "dead", "extracted", "GET", "502"): 1.0,
    }
    assert proxy.metric("strangler_client_errors_total", code="404", reason="no_route") == 1.0
    assert _samples(proxy, "strangler_request_duration_seconds_count") == {
        _labels(route="catalog", upstream="legacy", role="legacy"): 5.0,
        _labels(route="broken", upstream="dead", role="extracted"): 1.0,
    }
    assert (
        proxy.metric(
            "strangler_upstream_errors_total", route="broken", upstream="dead", kind="refused"
        )
        == 1.0
    )


async def test_breaker_opens_after_induced_failures(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    proxy = await proxy_factory(_config(backends))
    labels = {"route": "broken", "upstream": "dead"}
    assert proxy.metric("strangler_circuit_breaker_state", state="closed", **labels) == 1.0
    async with aiohttp.ClientSession() as session:
        statuses = [await _get(session, proxy.url(f"/api/broken/{i}")) for i in range(4)]

    assert statuses == [502, 502, 503, 503]
    assert {
        state: proxy.metric("strangler_circuit_breaker_state", state=state, **labels)
        for state in ("closed", "open", "half_open")
    } == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
    assert proxy.metric("strangler_circuit_breaker_transitions_total", to="open", **labels) == 1.0
    assert proxy.metric("strangler_upstream_errors_total", kind="refused", **labels) == 2.0
    assert (
        proxy.metric(
            "strangler_requests_total", role="extracted", method="GET", code="503", **labels
        )
        == 2.0
    )


async def test_fallback_counted_with_both_upstreams_and_reason(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    proxy = await proxy_factory(_config(backends))
    async with aiohttp.ClientSession() as session:
        assert await _get(session, proxy.url("/api/payments/1")) == 200

    assert _samples(proxy, "strangler_fallbacks_total") == {
        _labels(
            route="payments", from_upstream="dead", to_upstream="legacy", reason="refused"
        ): 1.0,
    }
    assert (
        proxy.metric(
            "strangler_requests_total",
            route="payments",
            upstream="legacy",
            role="legacy",
            method="GET",
            code="200",
        )
        == 1.0
    )


async def test_shadow_mismatch_counted(proxy_factory: ProxyFactory, backends: Backends) -> None:
    proxy = await proxy_factory(_config(backends))
    async with aiohttp.ClientSession() as session:
        assert await _get(session, proxy.url("/api/lookups/7")) == 200

    mismatches = {"route": "lookups", "result": "mismatch"}
    await _eventually(lambda: proxy.metric("strangler_shadow_comparisons_total", **mismatches) == 1)
    assert proxy.metric("strangler_shadow_comparisons_total", route="lookups", result="match") == 0
    assert _samples(proxy, "strangler_shadow_requests_total") == {
        _labels(route="lookups", upstream="orders", outcome="sent"): 1.0,
    }
    # The client was answered by the primary only.
    assert (
        proxy.metric(
            "strangler_requests_total",
            route="lookups",
            upstream="legacy",
            role="legacy",
            method="GET",
            code="200",
        )
        == 1.0
    )


async def test_route_stage_and_extracted_weight(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    proxy = await proxy_factory(_config(backends, canary_weight=25))

    assert _samples(proxy, "strangler_route_stage") == {
        _labels(route="catalog", stage="legacy"): 1.0,
        _labels(route="payments", stage="migrated"): 1.0,
        _labels(route="broken", stage="retired"): 1.0,
        _labels(route="lookups", stage="shadow"): 1.0,
        _labels(route="checkout", stage="canary"): 1.0,
    }
    weights = {
        name: proxy.metric("strangler_route_extracted_weight", route=name)
        for name in ("catalog", "payments", "broken", "lookups", "checkout")
    }
    assert weights == {
        "catalog": 0.0,
        "payments": 100.0,
        "broken": 100.0,
        "lookups": 0.0,
        "checkout": 25.0,
    }


async def test_config_reloads_counted_by_result(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    proxy = await proxy_factory(_config(backends, canary_weight=25))
    started = proxy.metric("strangler_config_last_reload_success_timestamp_seconds")
    assert started == pytest.approx(time.time(), abs=60)
    header = "\n".join(proxy.config_path.read_text().splitlines()[:3]) + "\n"

    await asyncio.sleep(0.01)  # the next timestamp must be able to differ
    proxy.config_path.write_text(header + dedent(_config(backends, canary_weight=50)))
    assert (await proxy.proxy.reload("test")).ok
    after_good = proxy.metric("strangler_config_last_reload_success_timestamp_seconds")
    proxy.config_path.write_text(header + dedent(_config(backends)) + "  - name: [broken\n")
    assert not (await proxy.proxy.reload("test")).ok

    assert proxy.metric("strangler_config_reloads_total", result="success") == 1.0
    assert proxy.metric("strangler_config_reloads_total", result="failure") == 1.0
    assert after_good > started
    assert proxy.metric("strangler_config_last_reload_success_timestamp_seconds") == after_good
    assert proxy.metric("strangler_route_extracted_weight", route="checkout") == 50.0


async def test_build_info(proxy_factory: ProxyFactory, backends: Backends) -> None:
    proxy = await proxy_factory(_config(backends))
    assert _samples(proxy, "strangler_build_info") == {_labels(version=__version__): 1.0}


async def test_labels_never_contain_request_paths(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    default = "    default: {upstream: legacy}\n"
    with_default = _config(backends).replace("    routes:", default + "    routes:")
    proxy = await proxy_factory(with_default)
    tokens = [secrets.token_hex(6) for _ in range(40)]
    prefixes = ["/api/catalog/", "/api/lookups/", "/api/broken/", "/api/payments/", "/", "/x/"]
    methods = ["GET", "POST", "PROPFIND", "MKCOL"]
    async with aiohttp.ClientSession() as session:
        for i, token in enumerate(tokens):
            path = f"{prefixes[i % len(prefixes)]}{token}?q={token}"
            await _get(session, proxy.url(path), methods[i % len(methods)])
        metrics_text = await (await session.get(proxy.admin_url("/metrics"))).text()

    leaked = {token for token in tokens if token in metrics_text or token.upper() in metrics_text}
    assert not leaked
    label_values = {
        value
        for family in proxy.proxy.metrics.registry.collect()
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert not [value for value in label_values if "/" in value or "?" in value]


async def test_metrics_endpoint_passes_promtool(
    proxy_factory: ProxyFactory, backends: Backends
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("STRANGLER_REQUIRE_TOOLS") == "1":
            pytest.fail("promtool is missing (apt-get install prometheus)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    proxy = await proxy_factory(_config(backends))
    async with aiohttp.ClientSession() as session:
        for path in [
            "/api/catalog/1",
            "/api/broken/1",
            "/api/payments/1",
            "/api/lookups/1",
            "/api/checkout/1",
            "/nowhere",
        ]:
            await _get(session, proxy.url(path))
        await _eventually(
            lambda: (
                proxy.metric(
                    "strangler_shadow_comparisons_total", route="lookups", result="mismatch"
                )
                == 1
            )
        )
        async with session.get(proxy.admin_url("/metrics")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()

    assert "strangler_requests_total{" in text
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
