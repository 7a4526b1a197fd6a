"""Issue 2, proxying end to end: real backends on loopback, the proxy in the test loop, aiohttp.

Covers routing (prefix, exact, regex, methods, host, header, cookie, default, 404/405), streaming
without buffering (RSS bounded while 64 MiB go each way), upstream keep-alive pooling, rewrites,
gzip bodies passed untouched, upstream failures (502/504 JSON that names the route and kind and
leaks nothing), errors that never echo the request, and WebSocket pass-through. Wire-level
checks (exact bytes sent upstream, framing, pipelining) live in test_wire.py.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from tests.harness import (
    ProxyHandle,
    RawUpstream,
    echo_app,
    free_port,
    parse_response,
    raw_exchange,
    render_config,
    start_app,
)

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
MARKER = "zz-marker-7f3e"


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, int]]:
    """Echo backends named legacy, orders and inventory; name -> port."""
    runners: list[web.AppRunner] = []
    ports: dict[str, int] = {}
    for name in ("legacy", "orders", "inventory"):
        runner, port = await start_app(echo_app(name))
        runners.append(runner)
        ports[name] = port
    yield ports
    for runner in runners:
        await runner.cleanup()


async def get_json(
    url: str | URL, *, method: str = "GET", **kwargs: Any
) -> tuple[int, CIMultiDict[str], Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as resp:
        body = await resp.read()
        data = json.loads(body) if body else None
        return resp.status, CIMultiDict(resp.headers), data


# ---- routing ------------------------------------------------------------------------------
ROUTING_CONFIG = """
upstreams:
  legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
  orders: {url: "http://127.0.0.1:{orders}", role: extracted}
  inventory: {url: "http://127.0.0.1:{inventory}", role: extracted}
routes:
  - name: health-exact
    match: {path: /api/health}
    upstream: inventory
  - name: order-by-id
    match: {path_regex: '^/api/orders/[0-9]+$', methods: [GET]}
    upstream: orders
  - name: orders-prefix
    match: {path_prefix: /api/orders, methods: [GET, POST]}
    upstream: inventory
  - name: shop-host
    match: {path_prefix: /shop, host: shop.example.com}
    upstream: orders
  - name: beta-header
    match: {path_prefix: /beta, headers: {X-Beta: "1"}}
    upstream: orders
  - name: beta-cookie
    match: {path_prefix: /beta, cookies: {beta: "yes"}}
    upstream: inventory
default:
  upstream: legacy
"""

ROUTING_CASES = [
    # (id, method, path, headers, expected upstream)
    ("exact", "GET", "/api/health", {}, "inventory"),
    ("exact-not-below", "GET", "/api/health/x", {}, "legacy"),
    ("regex", "GET", "/api/orders/42", {}, "orders"),
    ("regex-method-miss-falls-to-prefix", "POST", "/api/orders/42", {}, "inventory"),
    ("regex-no-match-falls-to-prefix", "GET", "/api/orders/abc", {}, "inventory"),
    ("prefix-itself", "GET", "/api/orders", {}, "inventory"),
    ("prefix-trailing-slash", "GET", "/api/orders/", {}, "inventory"),
    ("prefix-segment-aware", "GET", "/api/ordersX", {}, "legacy"),
    ("prefix-method-miss-to-default", "DELETE", "/api/orders/a/b", {}, "legacy"),
    ("host", "GET", "/shop/cart", {"Host": "shop.example.com"}, "orders"),
    ("host-with-port", "GET", "/shop/cart", {"Host": "SHOP.example.com:8080"}, "orders"),
    ("host-other", "GET", "/shop/cart", {"Host": "other.example.com"}, "legacy"),
    ("header", "GET", "/beta/x", {"X-Beta": "1"}, "orders"),
    ("header-wrong-value", "GET", "/beta/x", {"X-Beta": "2"}, "legacy"),
    ("cookie", "GET", "/beta/x", {"Cookie": "a=b; beta=yes"}, "inventory"),
    ("cookie-wrong-value", "GET", "/beta/x", {"Cookie": "beta=no"}, "legacy"),
    ("default", "GET", "/anything/else", {}, "legacy"),
    ("normalised-dot-segments", "GET", "/api/x/../orders/7", {}, "orders"),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [c[1:] for c in ROUTING_CASES],
    ids=[c[0] for c in ROUTING_CASES],
)
async def test_routing(
    proxy_factory: ProxyFactory,
    backends: dict[str, int],
    method: str,
    path: str,
    headers: dict[str, str],
    expected: str,
) -> None:
    proxy = await proxy_factory(render_config(ROUTING_CONFIG, **backends))
    url = URL(proxy.url(path), encoded=True)
    status, _, data = await get_json(url, method=method, headers=headers)
    assert status == 200
    assert data["upstream"] == expected


NO_DEFAULT_CONFIG = """
upstreams:
  legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
routes:
  - name: submit
    match: {path_prefix: /submit, methods: [POST]}
    upstream: legacy
"""

NO_ROUTE_CASES = [
    ("nothing-matches", "GET", "/elsewhere/" + MARKER, 404, "no_route"),
    ("method-only-failed", "GET", "/submit/" + MARKER, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [c[1:] for c in NO_ROUTE_CASES],
    ids=[c[0] for c in NO_ROUTE_CASES],
)
async def test_no_route_answers_json_without_echo(
    proxy_factory: ProxyFactory,
    backends: dict[str, int],
    method: str,
    path: str,
    status: int,
    error: str,
) -> None:
    proxy = await proxy_factory(render_config(NO_DEFAULT_CONFIG, **backends))
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, proxy.url(path), headers={"X-Echo": MARKER}) as resp,
    ):
        raw = await resp.read()
        assert resp.status == status
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["X-Request-ID"]
    assert json.loads(raw)["error"] == error
    assert MARKER.encode() not in raw
    # The connection stays usable after a 404/405: POST on the same session works.
    status_ok, _, data = await get_json(proxy.url("/submit/x"), method="POST", data=b"abc")
    assert status_ok == 200 and data["body_len"] == 3


# ---- rewrites -----------------------------------------------------------------------------
REWRITE_CONFIG = """
upstreams:
  legacy: {url: "http://127.0.0.1:{legacy}", role: legacy}
  orders: {url: "http://127.0.0.1:{orders}/svc", role: extracted}
routes:
  - name: orders-v2
    match: {path_prefix: /api/orders}
    upstream: orders
    rewrite: {replace_prefix: /v2/orders}
    fallback: {upstream: legacy}
  - name: inventory-stripped
    match: {path_prefix: /api/inventory}
    upstream: orders
    rewrite: {strip_prefix: true}
default:
  upstream: legacy
"""

REWRITE_CASES = [
    # (id, client path, upstream that answers, path it receives)
    ("replace-prefix-with-base-path", "/api/orders/7?x=1", "orders", "/svc/v2/orders/7?x=1"),
    ("replace-prefix-bare", "/api/orders", "orders", "/svc/v2/orders"),
    ("strip-prefix", "/api/inventory/sku/1", "orders", "/svc/sku/1"),
    ("strip-prefix-bare", "/api/inventory", "orders", "/svc/"),
    ("default-untouched", "/api/other", "legacy", "/api/other"),
    ("dot-segments-resolved-before-routing", "/api/orders/%2e%2e/admin", "legacy", "/api/admin"),
    ("dot-dot-escape-stays-out", "/api/orders/../../admin", "legacy", "/admin"),
]


@pytest.mark.parametrize(
    ("path", "upstream", "received"),
    [c[1:] for c in REWRITE_CASES],
    ids=[c[0] for c in REWRITE_CASES],
)
async def test_upstream_receives_the_routed_path(
    proxy_factory: ProxyFactory,
    backends: dict[str, int],
    path: str,
    upstream: str,
    received: str,
) -> None:
    proxy = await proxy_factory(render_config(REWRITE_CONFIG, **backends))
    # The raw target reaches the proxy unchanged (yarl would resolve the dot segments itself).
    raw = await raw_exchange(
        proxy.port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
    )
    status, _, body = parse_response(raw)
    assert status == 200
    data = json.loads(body)
    assert (data["upstream"], data["path"]) == (upstream, received)


async def test_legacy_fallback_receives_the_original_path(
    proxy_factory: ProxyFactory, backends: dict[str, int]
) -> None:
    # Rewrites describe the extracted service's paths; the monolith keeps the original ones.
    ports = dict(backends, orders=free_port())  # orders refuses connections
    proxy = await proxy_factory(render_config(REWRITE_CONFIG, **ports))
    status, headers, data = await get_json(proxy.url("/api/orders/7"))
    assert status == 200
    assert (data["upstream"], data["path"]) == ("legacy", "/api/orders/7")
    assert headers["X-Strangler-Fallback"] == "refused"


# ---- streaming ----------------------------------------------------------------------------
BIG = 64 * 1024 * 1024
PIECE = 64 * 1024


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssWatch:
    """Samples this process's RSS every few ms; the proxy runs in this process too."""

    def __init__(self) -> None:
        self.base = rss_bytes()
        self.peak = self.base
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes())
            await asyncio.sleep(0.005)

    def __enter__(self) -> RssWatch:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def pattern_piece(index: int) -> bytes:
    return bytes([index % 251]) * PIECE


def streaming_app() -> web.Application:
    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(PIECE):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = BIG
        await resp.prepare(request)
        for index in range(BIG // PIECE):
            await resp.write(pattern_piece(index))
        await resp.write_eof()
        return resp

    app = web.Application(client_max_size=1 << 31)
    app.router.add_post("/up", upload)
    app.router.add_get("/down", download)
    return app


def expected_digest() -> str:
    digest = hashlib.sha256()
    for index in range(BIG // PIECE):
        digest.update(pattern_piece(index))
    return digest.hexdigest()


@pytest.fixture
async def streaming_proxy(proxy_factory: ProxyFactory) -> AsyncIterator[ProxyHandle]:
    runner, port = await start_app(streaming_app())
    proxy = await proxy_factory(
        f"""
        upstreams:
          big: {{url: "http://127.0.0.1:{port}", role: legacy}}
        default:
          upstream: big
          max_body_bytes: 1GiB
        """
    )
    yield proxy
    await runner.cleanup()


async def test_large_upload_streams_without_buffering(streaming_proxy: ProxyHandle) -> None:
    async def body() -> AsyncIterator[bytes]:
        for index in range(BIG // PIECE):
            yield pattern_piece(index)

    with RssWatch() as watch:
        status, _, data = await get_json(streaming_proxy.url("/up"), method="POST", data=body())
    assert status == 200
    assert data == {"size": BIG, "sha256": expected_digest()}
    assert watch.growth < BIG // 4, f"RSS grew {watch.growth >> 20} MiB for a 64 MiB upload"


async def test_large_download_streams_without_buffering(streaming_proxy: ProxyHandle) -> None:
    digest = hashlib.sha256()
    size = 0
    with RssWatch() as watch:
        async with (
            aiohttp.ClientSession() as session,
            session.get(streaming_proxy.url("/down")) as resp,
        ):
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(BIG)
            async for chunk in resp.content.iter_chunked(PIECE):
                digest.update(chunk)
                size += len(chunk)
                await asyncio.sleep(0)  # a slow-ish reader: the proxy must apply back-pressure
    assert size == BIG and digest.hexdigest() == expected_digest()
    assert watch.growth < BIG // 4, f"RSS grew {watch.growth >> 20} MiB for a 64 MiB download"


# ---- pooling ------------------------------------------------------------------------------
async def test_upstream_connections_are_pooled(proxy_factory: ProxyFactory) -> None:
    peers: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner, port = await start_app(app)
    try:
        proxy = await proxy_factory(
            f"""
            upstreams:
              legacy: {{url: "http://127.0.0.1:{port}", role: legacy}}
            default: {{upstream: legacy}}
            """
        )
        for index in range(20):
            # A new client connection each time: pooling is on the upstream side.
            async with (
                aiohttp.ClientSession() as session,
                session.get(proxy.url(f"/n/{index}")) as resp,
            ):
                assert resp.status == 200
                assert await resp.text() == "ok"
    finally:
        await runner.cleanup()
    assert len(peers) == 20
    assert len(set(peers)) == 1


# ---- bodies are never touched -------------------------------------------------------------
async def test_gzip_body_passes_byte_identical(proxy_factory: ProxyFactory) -> None:
    payload = gzip.compress(b'{"items": [' + b'"x",' * 1000 + b'"y"]}', mtime=0)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=payload, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    app = web.Application()
    app.router.add_get("/g", handler)
    runner, port = await start_app(app)
    try:
        proxy = await proxy_factory(
            f"""
            upstreams:
              legacy: {{url: "http://127.0.0.1:{port}", role: legacy}}
            default: {{upstream: legacy}}
            """
        )
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.get(proxy.url("/g")) as resp,
        ):
            body = await resp.read()
            assert resp.headers["Content-Encoding"] == "gzip"
            assert resp.headers["Content-Length"] == str(len(payload))
    finally:
        await runner.cleanup()
    assert body == payload


# ---- upstream failures --------------------------------------------------------------------
async def _reset(
    up: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await up.read_head(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


async def _malformed(
    up: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await up.read_head(reader)
    writer.write(b"HELLO THERE\r\nthis is not http\r\n\r\n")
    await writer.drain()
    await reader.read()


async def _hang(
    up: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await up.read_head(reader)
    await reader.read()  # until the proxy gives up and closes


FAILURE_CASES = [
    # (id, behaviour or None for a closed port, status, error, kind)
    ("refused", None, 502, "bad_gateway", "refused"),
    ("reset", _reset, 502, "bad_gateway", "reset"),
    ("malformed", _malformed, 502, "bad_gateway", "malformed"),
    ("timeout", _hang, 504, "gateway_timeout", "timeout"),
]


@pytest.mark.parametrize(
    ("behaviour", "status", "error", "kind"),
    [c[1:] for c in FAILURE_CASES],
    ids=[c[0] for c in FAILURE_CASES],
)
async def test_upstream_failure_answers_small_json(
    proxy_factory: ProxyFactory, behaviour: Any, status: int, error: str, kind: str
) -> None:
    upstream = await RawUpstream(behaviour).start() if behaviour is not None else None
    port = upstream.port if upstream is not None else free_port()
    try:
        proxy = await proxy_factory(
            f"""
            upstreams:
              legacy: {{url: "http://127.0.0.1:{port}", role: legacy, connect_timeout: 1s}}
            routes:
              - name: fragile
                match: {{path_prefix: /f}}
                upstream: legacy
                timeout: 300ms
            """
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(proxy.url(f"/f/{MARKER}"), headers={"X-Echo": MARKER}) as resp,
        ):
            raw = await resp.read()
            assert resp.status == status
            assert resp.headers["Content-Type"] == "application/json"
    finally:
        if upstream is not None:
            await upstream.stop()
    data = json.loads(raw)
    assert data["error"] == error
    assert data["route"] == "fragile"
    assert data["kind"] == kind
    assert len(raw) < 300
    text = raw.decode()
    for leak in (f"127.0.0.1:{port}", str(port), "Traceback", MARKER):
        assert leak not in text
    assert proxy.access_lines()[-1]["status"] == status


# ---- WebSocket ----------------------------------------------------------------------------
async def test_websocket_upgrade_passes_through(proxy_factory: ProxyFactory) -> None:
    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello")
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner, port = await start_app(app)
    try:
        proxy = await proxy_factory(
            f"""
            upstreams:
              legacy: {{url: "http://127.0.0.1:{port}", role: legacy}}
            default: {{upstream: legacy}}
            """
        )
        async with aiohttp.ClientSession() as session, session.ws_connect(proxy.url("/ws")) as ws:
            assert (await ws.receive_str(timeout=2)) == "hello"
            for index in range(5):
                await ws.send_str(f"m{index}")
                assert (await ws.receive_str(timeout=2)) == f"echo:m{index}"
            await ws.send_bytes(b"\x00\x01\x02" * 1000)
            assert (await ws.receive_bytes(timeout=2)) == (b"\x00\x01\x02" * 1000)[::-1]
            await ws.close()
            assert ws.closed
            assert ws.close_code == aiohttp.WSCloseCode.OK
    finally:
        await runner.cleanup()


def _masked_text_frame(text: bytes) -> bytes:
    """A client WebSocket text frame (FIN, opcode 1), masked as RFC 6455 requires."""
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return bytes([0x81, 0x80 | len(text)]) + mask + payload


async def test_websocket_frames_sent_before_the_101_reach_the_upstream(
    proxy_factory: ProxyFactory,
) -> None:
    upstream_done = asyncio.Event()

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        await asyncio.sleep(0.2)  # the client's first frames arrive before this 101
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
        upstream_done.set()
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner, port = await start_app(app)
    try:
        proxy = await proxy_factory(
            f"""
            upstreams:
              legacy: {{url: "http://127.0.0.1:{port}", role: legacy}}
            default: {{upstream: legacy}}
            """
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            + _masked_text_frame(b"early")
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(_masked_text_frame(b"later"))  # still before the 101
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 101")
        received = b""
        while received.count(b"echo:") < 2:
            received += await asyncio.wait_for(reader.read(1024), 3)
        assert b"echo:early" in received and b"echo:later" in received
        assert received.index(b"echo:early") < received.index(b"echo:later")
        writer.close()
        # The client went away: the proxy ends the tunnel on the upstream side too.
        await asyncio.wait_for(upstream_done.wait(), 3)
    finally:
        await runner.cleanup()
