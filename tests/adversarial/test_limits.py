"""Edge limits: oversized request lines, heads and bodies are refused with the right status.

A body announced over the limit is refused with 413 before any upstream is contacted; a chunked
body that grows over it is cut and its upstream request aborted. The same holds when the request
is dribbled one byte at a time. A flood of pipelined requests in one write is answered in order
(or the connection closed) without the process's memory growing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from tests.adversarial.wire import Client, RecordingUpstream, config, exchange, split_responses
from tests.harness import ProxyHandle

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]

LIMITS = {
    "max_request_line": "1KiB",
    "max_header_bytes": "4KiB",
    "max_headers": "20",
    "max_body_bytes": "1KiB",
}
ROUTE = {"max_body_bytes": "100"}
H = b"Host: shop.example\r\n"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def headers(count: int, size: int) -> bytes:
    return b"".join(b"X-H%d: %s\r\n" % (n, b"v" * size) for n in range(count))


HEAD_LIMITS: list[tuple[str, bytes, int]] = [
    ("line_over", b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("line_with_query_over", b"GET /a?" + b"q" * 1100 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("header_bytes_over_combined", b"GET / HTTP/1.1\r\n" + H + headers(10, 600) + b"\r\n", 431),
    ("header_bytes_over_own_limit", b"GET / HTTP/1.1\r\n" + H + headers(5, 900) + b"\r\n", 431),
    ("one_huge_header", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 40000 + b"\r\n\r\n", 431),
    ("header_count_over", b"GET / HTTP/1.1\r\n" + H + headers(20, 1) + b"\r\n", 431),
    ("endless_header_name", b"GET / HTTP/1.1\r\n" + b"X" * 40000, 431),
]


@pytest.mark.parametrize(
    ("request_bytes", "status"), [c[1:] for c in HEAD_LIMITS], ids=[c[0] for c in HEAD_LIMITS]
)
async def test_head_limits(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, request_bytes: bytes, status: int
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, limits=LIMITS))
    raw, closed = await exchange(proxy.port, request_bytes)
    responses, _ = split_responses(raw)
    assert [r.status for r in responses] == [status]
    assert closed
    assert upstream.connections == 0


async def test_head_just_under_the_limits_is_served(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, limits=LIMITS))
    request = b"GET /" + b"a" * 900 + b" HTTP/1.1\r\n" + H + headers(18, 150) + b"\r\n"
    client = await Client.open(proxy.port)
    await client.send(request)
    (resp,) = await client.read_responses(1)
    client.close()
    assert resp.status == 200


BODY_LIMITS: list[tuple[str, str, int, int]] = [
    ("route_override_over", "/api/orders/1", 101, 413),
    ("route_override_at", "/api/orders/1", 100, 200),
    ("global_default_over", "/p", 1025, 413),
    ("global_default_at", "/p", 1024, 200),
    ("global_far_over", "/p", 10**15, 413),
]


@pytest.mark.parametrize(
    ("path", "length", "status"), [c[1:] for c in BODY_LIMITS], ids=[c[0] for c in BODY_LIMITS]
)
async def test_announced_body_over_limit_refused_before_any_upstream_contact(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, path: str, length: int, status: int
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, limits=LIMITS, route=ROUTE))
    head = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (path.encode(), H, length)
    client = await Client.open(proxy.port)
    await client.send(head + b"x" * min(length, 2000))
    (resp,) = await client.read_responses(1)
    client.close()
    assert resp.status == status
    if status == 413:
        await asyncio.sleep(0.05)
        assert upstream.connections == 0


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/api/orders/1", 100), ("/p", 1024)],
    ids=["route_override", "global_default"],
)
async def test_chunked_body_over_limit_is_cut_and_upstream_request_aborted(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, path: str, limit: int
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, limits=LIMITS, route=ROUTE))
    client = await Client.open(proxy.port)
    await client.send(
        b"POST %s HTTP/1.1\r\n%sTransfer-Encoding: chunked\r\n\r\n" % (path.encode(), H)
    )
    sent = 0
    while sent <= limit:
        await client.send(b"32\r\n" + b"y" * 50 + b"\r\n")
        sent += 50
        await asyncio.sleep(0.01)
    raw, closed = await client.read_all(2.0)
    client.close()
    assert closed
    responses, _ = split_responses(raw)
    assert [r.status for r in responses] in ([413], [])
    assert upstream.requests == []
    for conn in upstream.conns:
        await asyncio.wait_for(conn.closed.wait(), 2)
    assert sum(len(c.data) for c in upstream.conns) < limit + 1000


async def dribble(client: Client, data: bytes) -> None:
    for index in range(len(data)):
        client.writer.write(data[index : index + 1])
        await client.writer.drain()
        await asyncio.sleep(0.001)


async def test_dribbled_head_with_body_over_limit(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, limits=LIMITS, route=ROUTE))
    head = b"POST /api/orders/1 HTTP/1.1\r\n" + H + headers(8, 20) + b"Content-Length: 101\r\n\r\n"
    assert 250 < len(head) < 350
    client = await Client.open(proxy.port)
    await dribble(client, head)
    raw, closed = await client.read_all(2.0)
    client.close()
    assert closed
    assert [r.status for r in split_responses(raw)[0]] == [413]
    assert upstream.connections == 0


async def test_dribbled_chunked_body_over_limit(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, limits=LIMITS, route=ROUTE))
    client = await Client.open(proxy.port)
    await dribble(
        client, b"POST /api/orders/1 HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with contextlib.suppress(ConnectionError):
        await dribble(client, b"".join(b"a\r\n" + b"z" * 10 + b"\r\n" for _ in range(12)))
    raw, closed = await client.read_all(2.0)
    client.close()
    assert closed
    assert [r.status for r in split_responses(raw)[0]] in ([413], [])
    assert upstream.requests == []
    for conn in upstream.conns:
        await asyncio.wait_for(conn.closed.wait(), 2)


async def test_pipelined_flood_answered_in_order_with_bounded_memory(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, limits=LIMITS))
    count = 2000
    flood = b"".join(b"GET /p/%d HTTP/1.1\r\nHost: s\r\n\r\n" % n for n in range(count))
    before = rss_bytes()
    client = await Client.open(proxy.port)
    client.writer.write(flood)
    raw = b""
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while loop.time() < end:
        chunk = await asyncio.wait_for(client.reader.read(1 << 16), end - loop.time())
        if not chunk:
            break
        raw += chunk
        if raw.count(b"HTTP/1.1 ") >= count:
            break
    client.close()
    responses, _ = split_responses(raw)
    assert 0 < len(responses) <= count
    if len(responses) < count:
        assert not chunk, "fewer answers than requests, yet the connection stayed open"
    assert [r.body for r in responses] == [
        b'{"target": "/p/%d", "n": 0}' % n for n in range(len(responses))
    ]
    assert [r.target for r in upstream.requests] == [f"/p/{n}" for n in range(len(responses))]
    assert rss_bytes() - before < 50 * 1024 * 1024
