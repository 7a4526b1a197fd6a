"""Issue 4 through the proxy: the monolith serves when the extracted primary fails before answering.

The primary refuses (closed port), resets (closes after reading the head), hangs past the route
timeout, has an open breaker or a full bulkhead; the fallback answers with `X-Strangler-Fallback`
naming why. Request bodies are replayed only when kept and, for POST, only when opted in.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.harness import ProxyHandle, RawUpstream, free_port, render_config
from tests.integration import test_resilience as resilience

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
ClientTimeout = aiohttp.ClientTimeout(total=5)
upstreams = resilience.upstreams  # the fixture: scripted, raw and echo upstreams on loopback

MIGRATED = """
upstreams:
  legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
  orders: {url: "http://127.0.0.1:{orders}", role: extracted BULKHEAD}
routes:
  - name: orders
    match: {path_prefix: /api/orders}
    upstream: orders
    fallback: {upstream: legacy FALLBACK}
    EXTRA
default: {upstream: legacy}
"""


def migrated(
    *, legacy: int, orders: int, fallback: str = "", extra: str = "", bulkhead: str = ""
) -> str:
    text = (
        MIGRATED.replace("FALLBACK", fallback).replace("EXTRA", extra).replace("BULKHEAD", bulkhead)
    )
    return render_config(text, legacy=legacy, orders=orders)


async def reset_after_head(up: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
    await up.read_head(reader)


async def hang_after_head(up: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
    await up.read_head(reader)
    await reader.read()  # until the proxy gives up and closes


async def reset_after_body(up: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
    """Read the whole request (content-length framed), then close without answering."""
    head = await up.read_head(reader)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    up.received.append(await reader.readexactly(length))


def fallback_count(handle: ProxyHandle, reason: str) -> float:
    return handle.metric(
        "strangler_fallbacks_total",
        route="orders",
        from_upstream="orders",
        to_upstream="legacy",
        reason=reason,
    )


def error_count(handle: ProxyHandle, kind: str) -> float:
    return handle.metric(
        "strangler_upstream_errors_total", route="orders", upstream="orders", kind=kind
    )


# ---- failures of the primary ------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["refused", "reset", "timeout"])
async def test_primary_failure_is_served_by_the_monolith(
    proxy_factory: ProxyFactory, upstreams: Any, reason: str
) -> None:
    legacy = await upstreams.scripted(status=200)
    if reason == "refused":
        orders_port = free_port()
    else:
        behaviour = reset_after_head if reason == "reset" else hang_after_head
        orders_port = (await upstreams.raw(behaviour)).port
    handle = await proxy_factory(
        migrated(legacy=legacy.port, orders=orders_port, extra="timeout: 300ms")
    )
    async with (
        aiohttp.ClientSession(timeout=ClientTimeout) as s,
        s.get(handle.url("/api/orders/7")) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["X-Strangler-Fallback"] == reason
        assert (await resp.json())["upstream"] == "scripted"
    assert legacy.hits == 1
    assert fallback_count(handle, reason) == 1
    assert error_count(handle, reason) == 1
    (line,) = [entry for entry in handle.access_lines() if entry.get("route") == "orders"]
    assert (line["upstream"], line["status"], line["fallback"]) == ("legacy", 200, reason)


async def test_open_breaker_sends_requests_to_the_monolith_without_contacting_the_primary(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=500)
    legacy = await upstreams.scripted(status=200)
    handle = await proxy_factory(
        migrated(
            legacy=legacy.port,
            orders=orders.port,
            extra="breaker: {consecutive_failures: 3, open_duration: 30s}",
        )
    )
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        for _ in range(3):
            async with s.get(handle.url("/api/orders")) as resp:
                # A status answer is the primary's answer: forwarded, not replaced.
                assert resp.status == 500
                assert "X-Strangler-Fallback" not in resp.headers
        for _ in range(2):
            async with s.get(handle.url("/api/orders")) as resp:
                assert resp.status == 200
                assert resp.headers["X-Strangler-Fallback"] == "breaker_open"
    assert orders.hits == 3
    assert legacy.hits == 2
    assert fallback_count(handle, "breaker_open") == 2


async def test_full_bulkhead_sends_the_overflow_to_the_monolith(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    orders = await upstreams.scripted(status=200, delay=0.5)
    legacy = await upstreams.scripted(status=200)
    handle = await proxy_factory(
        migrated(legacy=legacy.port, orders=orders.port, bulkhead=", bulkhead: {max_concurrent: 1}")
    )

    async def fetch(s: aiohttp.ClientSession) -> tuple[int, str | None]:
        async with s.get(handle.url("/api/orders")) as resp:
            await resp.read()
            return resp.status, resp.headers.get("X-Strangler-Fallback")

    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        results = await asyncio.gather(*(fetch(s) for _ in range(3)))
    assert sorted(results, key=str) == [(200, "bulkhead_full"), (200, "bulkhead_full"), (200, None)]
    assert (orders.hits, legacy.hits) == (1, 2)
    assert handle.metric("strangler_bulkhead_rejections_total", upstream="orders") == 2
    assert fallback_count(handle, "bulkhead_full") == 2


async def test_fallback_failing_too_gives_the_error(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    handle = await proxy_factory(migrated(legacy=free_port(), orders=free_port()))
    async with (
        aiohttp.ClientSession(timeout=ClientTimeout) as s,
        s.get(handle.url("/api/orders")) as resp,
    ):
        assert resp.status == 502
        payload = await resp.json()
    assert (payload["kind"], payload["route"]) == ("refused", "orders")
    assert fallback_count(handle, "refused") == 1
    assert (
        handle.metric(
            "strangler_upstream_errors_total", route="orders", upstream="legacy", kind="refused"
        )
        == 1
    )


async def test_no_fallback_once_the_primary_response_started(
    proxy_factory: ProxyFactory, upstreams: Any
) -> None:
    async def half_answer(up: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        await up.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()

    orders = await upstreams.raw(half_answer)
    legacy = await upstreams.scripted(status=200)
    handle = await proxy_factory(migrated(legacy=legacy.port, orders=orders.port))
    async with (
        aiohttp.ClientSession(timeout=ClientTimeout) as s,
        s.get(handle.url("/api/orders")) as resp,
    ):
        assert resp.status == 200
        assert "X-Strangler-Fallback" not in resp.headers
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert legacy.hits == 0
    assert error_count(handle, "reset") == 1


# ---- request bodies ---------------------------------------------------------------------------
BODY = os.urandom(10_000)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 3000):
        yield data[start : start + 3000]


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [
        pytest.param("", 502, id="not-replayed-by-default"),
        pytest.param(", non_idempotent: true", 200, id="replayed-when-opted-in"),
    ],
)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_post_to_a_refusing_primary(
    proxy_factory: ProxyFactory, upstreams: Any, fallback: str, expected: int, framing: str
) -> None:
    legacy = await upstreams.scripted(status=200)
    handle = await proxy_factory(
        migrated(legacy=legacy.port, orders=free_port(), fallback=fallback)
    )
    data: Any = BODY if framing == "content-length" else chunks(BODY)
    async with (
        aiohttp.ClientSession(timeout=ClientTimeout) as s,
        s.post(handle.url("/api/orders"), data=data) as resp,
    ):
        assert resp.status == expected
        body = await resp.read()
        if expected == 200:
            assert resp.headers["X-Strangler-Fallback"] == "refused"
        else:
            assert b'"kind": "refused"' in body
    if expected == 200:
        assert legacy.bodies == [BODY]
        assert fallback_count(handle, "refused") == 1
    else:
        assert legacy.hits == 0
        assert fallback_count(handle, "refused") == 0


@pytest.mark.parametrize(
    ("size", "replayed"),
    [pytest.param(512, True, id="within-buffer"), pytest.param(4096, False, id="beyond-buffer")],
)
async def test_put_is_replayed_only_within_the_body_buffer(
    proxy_factory: ProxyFactory, upstreams: Any, size: int, replayed: bool
) -> None:
    orders = await upstreams.raw(reset_after_body)
    legacy = await upstreams.scripted(status=200)
    handle = await proxy_factory(
        migrated(legacy=legacy.port, orders=orders.port, fallback=", buffer_body_bytes: 1KiB")
    )
    data = os.urandom(size)
    async with (
        aiohttp.ClientSession(timeout=ClientTimeout) as s,
        s.put(handle.url("/api/orders/7"), data=data) as resp,
    ):
        body = await resp.read()
        if replayed:
            assert resp.status == 200
            assert resp.headers["X-Strangler-Fallback"] == "reset"
        else:
            assert resp.status == 502
            assert b'"kind": "reset"' in body
    assert orders.received[-1] == data  # the primary got the whole body before it failed
    assert legacy.bodies == ([data] if replayed else [])
    assert error_count(handle, "reset") == 1


@pytest.mark.parametrize("size", [pytest.param(100, id="small"), pytest.param(300_000, id="large")])
async def test_post_with_an_open_breaker_goes_to_the_monolith_with_its_body(
    proxy_factory: ProxyFactory, upstreams: Any, size: int
) -> None:
    """An open breaker means nothing reached the primary: sending the POST on is not a replay."""
    orders = await upstreams.scripted(status=500)
    legacy = await upstreams.scripted(status=200)
    handle = await proxy_factory(
        migrated(
            legacy=legacy.port,
            orders=orders.port,
            extra="breaker: {consecutive_failures: 2, open_duration: 30s}",
        )
    )
    body = os.urandom(size)
    async with aiohttp.ClientSession(timeout=ClientTimeout) as s:
        for _ in range(2):
            async with s.get(handle.url("/api/orders")) as resp:
                assert resp.status == 500
        async with s.post(handle.url("/api/orders"), data=chunks(body)) as resp:
            assert resp.status == 200
            assert resp.headers["X-Strangler-Fallback"] == "breaker_open"
    assert orders.hits == 2
    assert legacy.bodies == [body]
