"""Slow clients: header and body read timeouts end slowloris and slow-body connections.

The test config sets `header_timeout: 500ms` and `body_timeout: 500ms`. A head dribbled slower than
that is answered 408 and closed without reaching the upstream; a body that stalls gets 408 (or a
cut connection) and the upstream request it was streaming into is aborted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.adversarial.wire import Client, RecordingUpstream, config, split_responses
from tests.harness import ProxyHandle

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]


async def test_slowloris_head_gets_408_and_is_never_forwarded(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    await client.send(b"GET /p HTTP/1.1\r\nHost: shop.example\r\n")
    started = asyncio.get_running_loop().time()
    closed = False
    for n in range(20):  # one header every 150 ms, each well within the timeout
        try:
            await client.send(b"X-Slow-%d: 1\r\n" % n)
        except ConnectionError:
            closed = True
            break
        await asyncio.sleep(0.15)
        if client.reader.at_eof() or client.reader._buffer:
            break
    raw, closed_now = await client.read_all(2.0)
    client.close()
    elapsed = asyncio.get_running_loop().time() - started
    assert closed or closed_now
    assert [r.status for r in split_responses(raw)[0]] in ([408], [])
    assert elapsed < 2.5
    assert upstream.connections == 0
    assert proxy.metric("strangler_client_errors_total", code="408", reason="request_timeout") == 1


async def test_silent_connection_is_closed(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    raw, closed = await client.read_all(2.0)
    client.close()
    assert closed
    assert upstream.connections == 0
    assert raw in (b"",) or split_responses(raw)[0][0].status == 408


async def test_idle_after_partial_request_line(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    await client.send(b"GET /p")
    raw, closed = await client.read_all(2.0)
    client.close()
    assert closed
    assert [r.status for r in split_responses(raw)[0]] in ([408], [])
    assert upstream.connections == 0


async def test_stalled_body_gets_408_and_aborts_the_upstream_request(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    await client.send(
        b"POST /p HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 100\r\n\r\n" + b"a" * 10
    )
    raw, closed = await client.read_all(2.0)
    client.close()
    assert closed
    assert [r.status for r in split_responses(raw)[0]] in ([408], [])
    assert upstream.requests == []
    for conn in upstream.conns:
        await asyncio.wait_for(conn.closed.wait(), 2)


async def test_slow_chunked_body_trickle_is_ended(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    """Each chunk arrives within the body timeout once, then the client stalls mid-chunk."""
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    await client.send(
        b"POST /p HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(3):
        await client.send(b"1\r\nx\r\n")
        await asyncio.sleep(0.1)
    await client.send(b"10\r\nonly-part")
    raw, closed = await client.read_all(2.0)
    client.close()
    assert closed
    assert [r.status for r in split_responses(raw)[0]] in ([408], [])
    assert upstream.requests == []
    assert upstream.connections == 1
    await asyncio.wait_for(upstream.conns[0].closed.wait(), 2)
    assert proxy.metric("strangler_client_errors_total", code="408", reason="body_timeout") == 1
