"""Issue 4 through the proxy: breakers, bulkheads, retries, timeouts, upstream error metrics.

Real loopback upstreams (aiohttp apps and raw TCP servers) that answer 500, answer slowly, hang or
refuse; the proxy is driven with aiohttp. Upstream hits are counted to prove what never reached it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.harness import ProxyHandle, RawUpstream, echo_app, free_port, render_config, start_app

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
ClientTimeout = aiohttp.ClientTimeout(total=5)


class Scripted:
    """An aiohttp upstream whose answer the test changes as it goes; counts the requests it got."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.hits = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.statuses: list[int] = []  # consumed first, then `status` forever
        self.bodies: list[bytes] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.entered = asyncio.Event()  # set once the first request arrived

    async def start(self) -> Scripted:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner, self.port = await start_app(app)
        return self

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.entered.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.bodies.append(await request.read())
            if self.delay:
                await asyncio.sleep(self.delay)
            status = self.statuses.pop(0) if self.statuses else self.status
            return web.json_response({"upstream": "scripted", "hit": self.hits}, status=status)
        finally:
            self.in_flight -= 1

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def upstreams() -> Any:
    """Start upstreams on demand; all are stopped at the end of the test."""
    started: list[Any] = []

    async def scripted(status: int = 200, delay: float = 0.0) -> Scripted:
        up = await Scripted(status, delay).start()
        started.append(up)
        return up

    async def raw(behaviour: Any) -> RawUpstream:
        up = await RawUpstream(behaviour).start()
        started.append(up)
        return up

    async def echo(name: str) -> int:
        runner, port = await start_app(echo_app(name))
        started.append(runner)
        return port

    class Starter:
        pass

    starter = Starter()
    starter.scripted = scripted  # type: ignore[attr-defined]
    starter.raw = raw  # type: ignore[attr-defined]
    starter.echo = echo  # type: ignore[attr-defined]
    yield starter
    for up in started:
        await (up.cleanup() if isinstance(up, web.AppRunner) else up.stop())


def config(template: str, **ports: int) -> str:
    return render_config(template, **ports)


async def get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with session.get(url, **kwargs) as resp:
        body = await resp.read()
        return resp.status, resp.headers, body


async def admin_breaker(handle: ProxyHandle, route: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=ClientTimeout) as s,
        s.get(handle.admin_url("/admin/breakers")) as resp,
    ):
        assert resp.status == 200
        data = await resp.json()
    (entry,) = [b for b in data["breakers"] if b["route"] == route]
    return dict(entry)


ORDERS_ONLY = """
upstreams:
  legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
  orders: {url: "http://127.0.0.1:{orders}", role: extracted}
routes:
  - name: orders
    match: {path_prefix: /api/orders}
    upstream: orders
    BREAKER
default: {upstream: legacy}
"""


def orders_config(breaker: str, *, legacy: int, orders: int, extra: str = "") -> str:
    text = ORDERS_ONLY.replace("BREAKER", breaker + extra)
    return config(text, legacy=legacy, orders=orders)


# ---- breaker ----------------------------------------------------------------------------------
async def test_breaker_opens_after_consecutive_failures_and_rejects_without_contact(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=500)
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        orders_config(
            "breaker: {consecutive_failures: 3, open_duration: 30s}",
            legacy=legacy,
            orders=orders.port,
        )
    )
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        for _ in range(3):
            status, _, _ = await get(s, handle.url("/api/orders/1"))
            assert status == 500
        assert orders.hits == 3
        for _ in range(3):
            status, headers, body = await get(s, handle.url("/api/orders/1"))
            assert status == 503
            assert int(headers["Retry-After"]) >= 1
            assert headers["Content-Type"] == "application/json"
            import json

            payload = json.loads(body)
            assert payload["route"] == "orders"
            assert payload["error"] == "circuit_open"
    assert orders.hits == 3, "an open breaker must not contact the upstream"
    state = await admin_breaker(handle, "orders")
    assert state["state"] == "open"
    assert (
        handle.metric(
            "strangler_circuit_breaker_state", route="orders", upstream="orders", state="open"
        )
        == 1
    )
    assert (
        handle.metric(
            "strangler_circuit_breaker_transitions_total",
            route="orders",
            upstream="orders",
            to="open",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("breaker", "statuses", "delay"),
    [
        pytest.param(
            "breaker: {consecutive_failures: 100, failure_rate_threshold: 50, window_size: 4,"
            " minimum_calls: 4, open_duration: 30s}",
            [200, 500, 200, 500],
            0.0,
            id="failure-rate-50pct-of-4",
        ),
        pytest.param(
            "breaker: {consecutive_failures: 100, failure_rate_threshold: 60, window_type: time,"
            " window_duration: 5s, minimum_calls: 5, open_duration: 30s}",
            [500, 200, 500, 200, 500],
            0.0,
            id="failure-rate-60pct-of-5s-window",
        ),
        pytest.param(
            "breaker: {consecutive_failures: 100, slow_call_rate_threshold: 50,"
            " slow_call_duration: 100ms, window_size: 2, minimum_calls: 2, open_duration: 30s}",
            [200, 200],
            0.25,
            id="slow-call-rate-50pct-of-2",
        ),
    ],
)
async def test_breaker_trips_on_window_rates(
    proxy_factory: ProxyFactory, upstreams: Any, breaker: str, statuses: list[int], delay: float
) -> None:
    orders = await upstreams.scripted(status=200, delay=delay)
    orders.statuses = list(statuses)
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(orders_config(breaker, legacy=legacy, orders=orders.port))
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        for expected in statuses[:-1]:
            status, _, _ = await get(s, handle.url("/api/orders"))
            assert status == expected
            assert (await admin_breaker(handle, "orders"))["state"] == "closed"
        status, _, _ = await get(s, handle.url("/api/orders"))
        assert status == statuses[-1]
        assert (await admin_breaker(handle, "orders"))["state"] == "open"
        status, _, _ = await get(s, handle.url("/api/orders"))
        assert status == 503
    assert orders.hits == len(statuses)


async def test_breaker_half_open_probe_closes_or_reopens(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=500)
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        orders_config(
            "breaker: {consecutive_failures: 2, open_duration: 300ms, half_open_probes: 1}",
            legacy=legacy,
            orders=orders.port,
        )
    )
    labels = {"route": "orders", "upstream": "orders"}

    def transitions(to: str) -> float:
        return handle.metric("strangler_circuit_breaker_transitions_total", to=to, **labels)

    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        # Trip, let the open period pass with the upstream still broken: the probe fails.
        for _ in range(2):
            assert (await get(s, handle.url("/api/orders")))[0] == 500
        assert (await get(s, handle.url("/api/orders")))[0] == 503
        await asyncio.sleep(0.35)
        assert (await admin_breaker(handle, "orders"))["state"] == "half_open"
        assert handle.metric("strangler_circuit_breaker_state", state="half_open", **labels) == 1
        assert (await get(s, handle.url("/api/orders")))[0] == 500  # the failing probe
        assert (await admin_breaker(handle, "orders"))["state"] == "open"
        assert (await get(s, handle.url("/api/orders")))[0] == 503
        assert orders.hits == 3
        assert transitions("open") == 2
        assert transitions("half_open") == 1

        # Fix the upstream; after the open period one probe succeeds and the breaker closes.
        orders.status = 200
        await asyncio.sleep(0.35)
        assert (await get(s, handle.url("/api/orders")))[0] == 200
        state = await admin_breaker(handle, "orders")
        assert state["state"] == "closed"
        assert state["consecutive_failures"] == 0
        for _ in range(3):
            assert (await get(s, handle.url("/api/orders")))[0] == 200
    assert orders.hits == 7
    assert handle.metric("strangler_circuit_breaker_state", state="closed", **labels) == 1
    assert handle.metric("strangler_circuit_breaker_state", state="open", **labels) == 0
    assert transitions("half_open") == 2
    assert transitions("closed") == 1


async def test_half_open_admits_only_the_configured_probes(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=500)
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        orders_config(
            "breaker: {consecutive_failures: 1, open_duration: 200ms, half_open_probes: 1}",
            legacy=legacy,
            orders=orders.port,
        )
    )
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        assert (await get(s, handle.url("/api/orders")))[0] == 500
        orders.status, orders.delay = 200, 0.3  # recovered, but slow to answer the probe
        await asyncio.sleep(0.25)
        results = await asyncio.gather(*(get(s, handle.url("/api/orders")) for _ in range(3)))
        assert sorted(r[0] for r in results) == [200, 503, 503]
        assert (await admin_breaker(handle, "orders"))["state"] == "closed"
    assert orders.hits == 2


async def test_statuses_retried_but_not_breaker_failures_do_not_trip_it(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=200)
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        orders_config(
            "breaker: {consecutive_failures: 2, failure_statuses: [500], open_duration: 30s}",
            legacy=legacy,
            orders=orders.port,
            extra="\n    retry: {attempts: 3, retry_statuses: [503], backoff_base: 5ms,"
            " backoff_max: 10ms}",
        )
    )
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        orders.statuses = [503, 503]
        assert (await get(s, handle.url("/api/orders")))[0] == 200
        state = await admin_breaker(handle, "orders")
        assert (state["state"], state["consecutive_failures"]) == ("closed", 0)
        orders.statuses = [500, 500]  # breaker failures, not retried
        assert (await get(s, handle.url("/api/orders")))[0] == 500
        assert (await get(s, handle.url("/api/orders")))[0] == 500
        assert (await admin_breaker(handle, "orders"))["state"] == "open"
    assert orders.hits == 5


async def test_breaker_state_survives_reload_unless_its_settings_change(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=500)
    legacy = await upstreams.echo("legacy")
    breaker = "breaker: {consecutive_failures: 2, open_duration: 30s}"
    handle = await proxy_factory(orders_config(breaker, legacy=legacy, orders=orders.port))
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        for _ in range(2):
            assert (await get(s, handle.url("/api/orders")))[0] == 500
        assert (await get(s, handle.url("/api/orders")))[0] == 503

        # An unrelated route is added: the orders breaker is the same object, still open.
        unrelated = (
            "\n  - name: catalog\n    match: {path_prefix: /api/catalog}\n    upstream: legacy\n"
        )
        text = handle.config_path.read_text()
        marker = "default: {upstream: legacy}"
        handle.config_path.write_text(text.replace(marker, unrelated.lstrip("\n") + marker))
        result = await handle.proxy.reload()
        assert result.ok and result.changed, result
        assert (await admin_breaker(handle, "orders"))["state"] == "open"
        assert (await get(s, handle.url("/api/orders")))[0] == 503
        assert (await get(s, handle.url("/api/catalog")))[0] == 200
        assert orders.hits == 2

        # The breaker's own settings change: a fresh, closed breaker.
        text = handle.config_path.read_text()
        handle.config_path.write_text(text.replace("open_duration: 30s", "open_duration: 20s"))
        result = await handle.proxy.reload()
        assert result.ok and result.changed, result
        assert (await admin_breaker(handle, "orders"))["state"] == "closed"
        assert (await get(s, handle.url("/api/orders")))[0] == 500
    assert orders.hits == 3


# ---- bulkhead ---------------------------------------------------------------------------------
BULKHEAD = """
upstreams:
  legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
  orders:
    url: "http://127.0.0.1:{orders}"
    role: extracted
    bulkhead: BULKHEAD
routes:
  - name: orders
    match: {path_prefix: /api/orders}
    upstream: orders
default: {upstream: legacy}
"""


async def test_bulkhead_rejects_beyond_max_concurrent_at_once(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=200, delay=1.0)
    legacy = await upstreams.echo("legacy")
    text = BULKHEAD.replace("BULKHEAD", "{max_concurrent: 2}")
    handle = await proxy_factory(config(text, legacy=legacy, orders=orders.port))
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        tasks = [asyncio.create_task(get(s, handle.url(f"/api/orders/{i}"))) for i in range(5)]
        pending = set(tasks)
        while len(pending) > 2:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        done = [t for t in tasks if t.done()]
        # The upstream takes a second per request: the first three answers are the rejections,
        # given while both slots were still busy.
        assert len(done) == 3
        assert [t.result()[0] for t in done] == [503, 503, 503]
        rejected = [t.result()[2] for t in done]
        results = await asyncio.gather(*tasks)
    assert sorted(r[0] for r in results) == [200, 200, 503, 503, 503]
    assert len(rejected) == 3
    assert all(b'"bulkhead_full"' in body for body in rejected)
    assert orders.hits == 2
    assert orders.max_in_flight == 2
    assert handle.metric("strangler_bulkhead_rejections_total", upstream="orders") == 3


async def test_bulkhead_queue_serves_a_waiter_when_a_slot_frees(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=200, delay=0.2)
    legacy = await upstreams.echo("legacy")
    text = BULKHEAD.replace("BULKHEAD", "{max_concurrent: 1, max_wait: 3s, max_waiting: 1}")
    handle = await proxy_factory(config(text, legacy=legacy, orders=orders.port))
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        results = await asyncio.gather(*(get(s, handle.url("/api/orders")) for _ in range(2)))
    assert [r[0] for r in results] == [200, 200]
    assert orders.hits == 2
    assert orders.max_in_flight == 1
    assert handle.metric("strangler_bulkhead_rejections_total", upstream="orders") == 0


async def test_bulkhead_rejects_a_waiter_that_waits_too_long_and_a_full_queue(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=200, delay=1.0)
    legacy = await upstreams.echo("legacy")
    text = BULKHEAD.replace("BULKHEAD", "{max_concurrent: 1, max_wait: 150ms, max_waiting: 1}")
    handle = await proxy_factory(config(text, legacy=legacy, orders=orders.port))
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        holder = asyncio.create_task(get(s, handle.url("/api/orders/holder")))
        await asyncio.wait_for(orders.entered.wait(), 2)
        waiter = asyncio.create_task(get(s, handle.url("/api/orders/waiter")))
        await asyncio.sleep(0.05)  # the waiter is queued by now
        overflow = await get(s, handle.url("/api/orders/overflow"))
        assert overflow[0] == 503  # the queue holds one: rejected at once
        assert not waiter.done()
        waited = await waiter
        assert waited[0] == 503
        assert b'"bulkhead_full"' in waited[2]
        assert not holder.done()
        assert (await holder)[0] == 200
    assert orders.hits == 1
    assert handle.metric("strangler_bulkhead_rejections_total", upstream="orders") == 2


# ---- retries ----------------------------------------------------------------------------------
RETRY = """
upstreams:
  legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
  orders: {url: "http://127.0.0.1:{orders}", role: extracted}
routes:
  - name: orders
    match: {path_prefix: /api/orders}
    upstream: orders
    RETRY
default: {upstream: legacy}
"""


def retry_config(retry: str, *, legacy: int, orders: int) -> str:
    return config(RETRY.replace("RETRY", retry), legacy=legacy, orders=orders)


async def test_retry_on_status_until_success(proxy_factory: ProxyFactory, upstreams: Any) -> None:
    orders = await upstreams.scripted(status=200)
    orders.statuses = [503, 503]
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        retry_config(
            "retry: {attempts: 3, retry_statuses: [503], backoff_base: 5ms, backoff_max: 10ms}",
            legacy=legacy,
            orders=orders.port,
        )
    )
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        status, _, body = await get(s, handle.url("/api/orders"))
        assert status == 200
        assert b'"hit": 3' in body
        # The bulkhead-free, breaker-free path leaves nothing behind: a second request is clean.
        orders.statuses = [503, 503, 503]
        status, _, _ = await get(s, handle.url("/api/orders"))
        assert status == 503  # attempts exhausted: the last answer is forwarded
    assert orders.hits == 6
    assert handle.metric("strangler_retries_total", route="orders", upstream="orders") == 4


async def test_retry_on_status_releases_the_bulkhead_slot(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=200)
    legacy = await upstreams.echo("legacy")
    text = BULKHEAD.replace("BULKHEAD", "{max_concurrent: 1}").replace(
        "    upstream: orders\n",
        "    upstream: orders\n    retry: {attempts: 2, retry_statuses: [503], backoff_base: 5ms,"
        " backoff_max: 10ms}\n",
    )
    handle = await proxy_factory(config(text, legacy=legacy, orders=orders.port))
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        for _ in range(3):
            orders.statuses = [503]
            assert (await get(s, handle.url("/api/orders")))[0] == 200
    assert orders.hits == 6
    assert handle.metric("strangler_bulkhead_rejections_total", upstream="orders") == 0


@pytest.mark.parametrize(
    ("non_idempotent", "expected_hits"),
    [pytest.param("false", 1, id="default"), pytest.param("true", 1, id="opted-in")],
)
async def test_post_is_never_retried_once_it_reached_the_upstream(
    proxy_factory: ProxyFactory, upstreams: Any, non_idempotent: str, expected_hits: int
) -> None:
    orders = await upstreams.scripted(status=200)
    orders.statuses = [503]
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        retry_config(
            f"retry: {{attempts: 3, retry_statuses: [503], non_idempotent: {non_idempotent},"
            " backoff_base: 5ms, backoff_max: 10ms}",
            legacy=legacy,
            orders=orders.port,
        )
    )
    async with (
        aiohttp.ClientSession(timeout=ClientTimeout) as s,
        s.post(handle.url("/api/orders"), data=b"order=1") as resp,
    ):
        assert resp.status == 503
    assert orders.hits == expected_hits
    assert handle.metric("strangler_retries_total", route="orders", upstream="orders") == 0


@pytest.mark.parametrize(
    ("non_idempotent", "status", "tries"),
    [pytest.param("false", 502, 1, id="default"), pytest.param("true", 502, 3, id="opted-in")],
)
async def test_post_to_a_refusing_upstream_is_retried_only_when_opted_in(
    proxy_factory: ProxyFactory, upstreams: Any, non_idempotent: str, status: int, tries: int
) -> None:
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        retry_config(
            f"retry: {{attempts: 3, non_idempotent: {non_idempotent}, backoff_base: 5ms,"
            " backoff_max: 10ms}",
            legacy=legacy,
            orders=free_port(),
        )
    )
    async with (
        aiohttp.ClientSession(timeout=ClientTimeout) as s,
        s.post(handle.url("/api/orders"), data=b"order=1") as resp,
    ):
        assert resp.status == status
        payload = await resp.json()
    assert payload["kind"] == "refused"
    labels = {"route": "orders", "upstream": "orders"}
    assert handle.metric("strangler_upstream_errors_total", kind="refused", **labels) == tries
    assert handle.metric("strangler_retries_total", **labels) == tries - 1


async def test_retry_budget_bounds_retries_against_a_down_upstream(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    async def reset_after_a_while(up: RawUpstream, reader: Any, writer: Any) -> None:
        await up.read_head(reader)
        await asyncio.sleep(0.2)  # every request is in flight when the failures come back

    orders = await upstreams.raw(reset_after_a_while)
    legacy = await upstreams.echo("legacy")
    requests, budget_percent, min_retries = 20, 10, 1
    handle = await proxy_factory(
        retry_config(
            f"retry: {{attempts: 2, budget_percent: {budget_percent},"
            f" min_retry_concurrency: {min_retries}, backoff_base: 5ms, backoff_max: 10ms}}",
            legacy=legacy,
            orders=orders.port,
        )
    )
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        results = await asyncio.gather(
            *(get(s, handle.url("/api/orders")) for _ in range(requests))
        )
    assert all(r[0] == 502 for r in results)
    allowed_retries = max(min_retries, requests * budget_percent // 100)
    assert requests < orders.connections <= requests + allowed_retries
    retries = handle.metric("strangler_retries_total", route="orders", upstream="orders")
    assert retries == orders.connections - requests


# ---- timeouts ---------------------------------------------------------------------------------
async def test_per_try_timeout_then_success_on_the_next_try(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    async def hang_first(up: RawUpstream, reader: Any, writer: Any) -> None:
        await up.read_head(reader)
        if up.connections == 1:
            await reader.read()  # hang until the proxy gives up on this connection
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    orders = await upstreams.raw(hang_first)
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        retry_config(
            "retry: {attempts: 2, per_try_timeout: 200ms, backoff_base: 5ms, backoff_max: 10ms}\n"
            "    timeout: 3s",
            legacy=legacy,
            orders=orders.port,
        )
    )
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        status, _, body = await get(s, handle.url("/api/orders"))
    assert (status, body) == (200, b"ok")
    assert orders.connections == 2
    labels = {"route": "orders", "upstream": "orders"}
    assert handle.metric("strangler_upstream_errors_total", kind="timeout", **labels) == 1
    assert handle.metric("strangler_retries_total", **labels) == 1


async def test_route_timeout_bounds_every_try(proxy_factory: ProxyFactory, upstreams: Any) -> None:
    async def hang(up: RawUpstream, reader: Any, writer: Any) -> None:
        await up.read_head(reader)
        await reader.read()

    orders = await upstreams.raw(hang)
    legacy = await upstreams.echo("legacy")
    handle = await proxy_factory(
        retry_config(
            "retry: {attempts: 5, per_try_timeout: 200ms, backoff_base: 5ms, backoff_max: 10ms}\n"
            "    timeout: 500ms",
            legacy=legacy,
            orders=orders.port,
        )
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        status, _, body = await get(s, handle.url("/api/orders"))
    elapsed = loop.time() - start
    assert status == 504
    assert b'"kind": "timeout"' in body
    # 500ms fits two full tries of 200ms and a cut third; never five.
    assert 2 <= orders.connections <= 3
    assert elapsed < 2.0  # bounded by the route timeout, not by 5 x per-try timeout
    labels = {"route": "orders", "upstream": "orders"}
    assert handle.metric("strangler_upstream_errors_total", kind="timeout", **labels) == (
        orders.connections
    )


# ---- upstream error metrics -------------------------------------------------------------------
async def test_upstream_errors_are_counted_by_kind(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    async def reset(up: RawUpstream, reader: Any, writer: Any) -> None:
        await up.read_head(reader)

    async def malformed(up: RawUpstream, reader: Any, writer: Any) -> None:
        await up.read_head(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await reader.read()

    resetting = await upstreams.raw(reset)
    garbling = await upstreams.raw(malformed)
    legacy = await upstreams.echo("legacy")
    text = f"""
    upstreams:
      legacy: {{url: "http://127.0.0.1:{legacy}", role: legacy}}
      refusing: {{url: "http://127.0.0.1:{free_port()}", role: extracted}}
      resetting: {{url: "http://127.0.0.1:{resetting.port}", role: extracted}}
      garbling: {{url: "http://127.0.0.1:{garbling.port}", role: extracted}}
    routes:
      - {{name: r1, match: {{path_prefix: /refused}}, upstream: refusing}}
      - {{name: r2, match: {{path_prefix: /reset}}, upstream: resetting}}
      - {{name: r3, match: {{path_prefix: /malformed}}, upstream: garbling}}
    default: {{upstream: legacy}}
    """
    handle = await proxy_factory(text)
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        for path, name, upstream in [
            ("/refused", "r1", "refusing"),
            ("/reset", "r2", "resetting"),
            ("/malformed", "r3", "garbling"),
        ]:
            for _ in range(2):
                status, _, body = await get(s, handle.url(path))
                assert status == 502
                kind = path.lstrip("/")
                assert f'"kind": "{kind}"'.encode() in body
            assert (
                handle.metric(
                    "strangler_upstream_errors_total", route=name, upstream=upstream, kind=kind
                )
                == 2
            )


async def test_retries_against_a_refusing_upstream_are_no_storm(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    legacy = await upstreams.echo("legacy")
    requests, attempts = 40, 3
    handle = await proxy_factory(
        retry_config(
            f"retry: {{attempts: {attempts}, budget_percent: 10, min_retry_concurrency: 1,"
            " backoff_base: 5ms, backoff_max: 10ms}",
            legacy=legacy,
            orders=free_port(),
        )
    )
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        results = await asyncio.gather(
            *(get(s, handle.url("/api/orders")) for _ in range(requests))
        )
    assert all(r[0] == 502 for r in results)
    labels = {"route": "orders", "upstream": "orders"}
    retries = handle.metric("strangler_retries_total", **labels)
    # Without a budget every request would try `attempts` times: 80 retries.
    assert retries <= requests // 4
    assert handle.metric("strangler_upstream_errors_total", kind="refused", **labels) == (
        requests + retries
    )
