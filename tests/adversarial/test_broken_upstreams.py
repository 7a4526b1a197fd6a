"""Broken upstreams: the client gets a 502, a 504 or a cut connection, never a padded or merged
response; the bad upstream connection is not reused, and the next request is served correctly.

Each case's upstream misbehaves on its first request only and answers normally afterwards, so the
test can send a second request on a new client connection and check it reaches the upstream on a
new connection and gets the right answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.adversarial.wire import (
    MARKER,
    Client,
    RecordingUpstream,
    RefusedPort,
    UpConn,
    UpRequest,
    config,
    ok,
    split_responses,
)
from tests.harness import ProxyHandle

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
EXTRA = MARKER.encode()


def first_then_ok(
    misbehave: Callable[[UpRequest, UpConn], None],
) -> Callable[[UpRequest, UpConn], None]:
    calls = 0

    def reply(req: UpRequest, conn: UpConn) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            misbehave(req, conn)
        else:
            ok(req, conn)

    return reply


def send_then(data: bytes, then: str) -> Callable[[UpRequest, UpConn], None]:
    def misbehave(req: UpRequest, conn: UpConn) -> None:
        conn.send(data)
        if then == "close":
            conn.close()
        elif then == "reset":
            asyncio.get_running_loop().call_later(0.05, conn.reset)

    return misbehave


def silent(req: UpRequest, conn: UpConn) -> None:
    return None


async def read_first(client: Client, *, head_request: bool = False) -> tuple[bytes, bool]:
    """Read until one complete response arrived (plus a short grace) or the proxy closed."""
    raw = b""
    loop = asyncio.get_running_loop()
    end = loop.time() + 3.0
    complete_at: float | None = None
    while loop.time() < end:
        wait = end - loop.time() if complete_at is None else complete_at + 0.1 - loop.time()
        if wait <= 0:
            return raw, False
        try:
            chunk = await asyncio.wait_for(client.reader.read(65536), wait)
        except TimeoutError:
            continue
        except ConnectionError:
            return raw, True
        if not chunk:
            return raw, True
        raw += chunk
        if complete_at is None and (
            split_responses(raw)[0] or (head_request and b"\r\n\r\n" in raw)
        ):
            complete_at = loop.time()
    return raw, False


OK_HEAD = b"HTTP/1.1 200 OK\r\n"
# (id, method, misbehaviour, acceptable outcomes for the client: statuses, or "cut")
CASES: list[tuple[str, str, Callable[[UpRequest, UpConn], None], set[object]]] = [
    ("silent", "GET", silent, {504}),
    ("reset_before_response", "GET", send_then(b"", "reset"), {502}),
    ("closed_before_response", "GET", send_then(b"", "close"), {502}),
    (
        "reset_mid_body",
        "GET",
        send_then(OK_HEAD + b"Content-Length: 100\r\n\r\n" + b"b" * 50, "reset"),
        {"cut", 502},
    ),
    (
        "truncated_body",
        "GET",
        send_then(OK_HEAD + b"Content-Length: 100\r\n\r\n" + b"b" * 50, "close"),
        {"cut", 502},
    ),
    (
        "truncated_chunked",
        "GET",
        send_then(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n32\r\n" + b"b" * 20, "close"),
        {"cut", 502},
    ),
    ("truncated_head", "GET", send_then(OK_HEAD + b"Content-Le", "close"), {502}),
    (
        "malformed_status_line",
        "GET",
        send_then(b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nhi", "keep"),
        {502},
    ),
    ("not_http", "GET", send_then(b"SSH-2.0-OpenSSH_9.6\r\n", "keep"), {502}),
    (
        "status_out_of_range",
        "GET",
        send_then(b"HTTP/1.1 9999 X\r\nContent-Length: 0\r\n\r\n", "keep"),
        {502},
    ),
    (
        "cl_and_te",
        "GET",
        send_then(
            OK_HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + EXTRA,
            "keep",
        ),
        {502, "cut"},
    ),
    (
        "two_content_lengths",
        "GET",
        send_then(OK_HEAD + b"Content-Length: 5\r\nContent-Length: 9\r\n\r\nhello" + EXTRA, "keep"),
        {502},
    ),
    (
        "content_length_list",
        "GET",
        send_then(OK_HEAD + b"Content-Length: 5, 9\r\n\r\nhello" + EXTRA, "keep"),
        {502},
    ),
    (
        "bad_chunk_size",
        "GET",
        send_then(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "keep"),
        {502, "cut"},
    ),
    (
        "header_obs_fold",
        "GET",
        send_then(OK_HEAD + b"X-A: b\r\n c\r\nContent-Length: 0\r\n\r\n", "keep"),
        {502},
    ),
    ("header_bare_lf", "GET", send_then(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "keep"), {502}),
    (
        "bytes_beyond_content_length",
        "GET",
        send_then(OK_HEAD + b"Content-Length: 5\r\n\r\nhello" + EXTRA, "keep"),
        {200},
    ),
    (
        "smuggled_second_response",
        "GET",
        send_then(
            OK_HEAD
            + b"Content-Length: 5\r\n\r\nhello"
            + b"HTTP/1.1 200 OK\r\nContent-Length: "
            + b"%d\r\n\r\n" % len(EXTRA)
            + EXTRA,
            "keep",
        ),
        {200},
    ),
    (
        "body_on_head_response",
        "HEAD",
        send_then(OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(EXTRA) + EXTRA, "keep"),
        {200},
    ),
    (
        "body_on_204",
        "GET",
        send_then(
            b"HTTP/1.1 204 No Content\r\nContent-Length: %d\r\n\r\n" % len(EXTRA) + EXTRA, "keep"
        ),
        {204, 502},
    ),
    (
        "body_on_304",
        "GET",
        send_then(b"HTTP/1.1 304 Not Modified\r\n\r\n" + EXTRA, "keep"),
        {304, 502},
    ),
]


@pytest.mark.parametrize(
    ("method", "misbehave", "outcomes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_broken_upstream_never_yields_a_padded_or_merged_response(
    proxy_factory: ProxyFactory,
    method: str,
    misbehave: Callable[[UpRequest, UpConn], None],
    outcomes: set[object],
) -> None:
    up = await RecordingUpstream(first_then_ok(misbehave)).start()
    try:
        proxy = await proxy_factory(config(legacy=up.port))
        client = await Client.open(proxy.port)
        # Two requests on one client connection: the second must not see the first's leftovers.
        await client.send(b"%s /first HTTP/1.1\r\nHost: shop.example\r\n\r\n" % method.encode())
        raw, closed = await read_first(client, head_request=method == "HEAD")
        if not closed:
            await client.send(b"GET /second HTTP/1.1\r\nHost: shop.example\r\n\r\n")
            more, _ = await read_first(client)
            raw += more
        client.close()
        if method == "HEAD":  # httptools cannot be told a response answers a HEAD
            head, _, raw = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            raw = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" + raw
        responses, _ = split_responses(raw)
        first = responses[0].status if responses else "cut"
        assert first in outcomes, raw[:300]
        if first == "cut":
            assert closed
        for resp in responses:
            assert EXTRA not in resp.body
            assert b"b" * 50 not in resp.body  # a truncated body is never completed or padded
        assert EXTRA not in raw
        if len(responses) > 1:
            assert responses[1].body == b'{"target": "/second", "n": 0}'
        # The next request on a fresh client connection is served, on a fresh upstream connection.
        second = await Client.open(proxy.port)
        await second.send(b"GET /next HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        (resp,) = await second.read_responses(1)
        second.close()
        assert resp.status == 200
        assert resp.body == b'{"target": "/next", "n": 0}'
        assert up.conns[0].requests[0].target == "/first"
        assert all(r.target != "/next" for r in up.conns[0].requests)
        await asyncio.wait_for(up.conns[0].closed.wait(), 2)
    finally:
        await up.stop()


async def test_refused_upstream_gets_502_then_recovers(proxy_factory: ProxyFactory) -> None:
    refused = RefusedPort()
    proxy = await proxy_factory(config(legacy=refused.port))
    for _ in range(2):
        client = await Client.open(proxy.port)
        await client.send(b"GET /p HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        (resp,) = await client.read_responses(1)
        client.close()
        assert resp.status == 502
        assert b"refused" in resp.body
        assert str(refused.port).encode() not in resp.body


async def test_silent_upstream_is_closed_after_the_504(proxy_factory: ProxyFactory) -> None:
    up = await RecordingUpstream(silent).start()
    try:
        proxy = await proxy_factory(config(legacy=up.port))
        client = await Client.open(proxy.port)
        await client.send(b"GET /p HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        (resp,) = await client.read_responses(1, wait=3.0)
        client.close()
        assert resp.status == 504
        await asyncio.wait_for(up.conns[0].closed.wait(), 2)
    finally:
        await up.stop()
