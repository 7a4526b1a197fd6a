"""Issue 2, proxying at the wire level: raw sockets on both sides, exact bytes asserted.

What the upstream receives (no header added beyond X-Forwarded-* and X-Request-ID, hop-by-hop
headers gone, query byte for byte), what the client receives (hop-by-hop response headers gone,
request ids), framing (HEAD/204/304 without a body and keep-alive after them, chunked both ways,
Expect: 100-continue, 413 before 100), unsafe targets answered 400 without reaching the upstream,
and pipelined requests answered in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tests.harness import (
    ProxyHandle,
    RawUpstream,
    echo_app,
    parse_response,
    raw_exchange,
    start_app,
)

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
MARKER = "zz-marker-7f3e"


# ---- a small HTTP/1.1 reader for both sides -----------------------------------------------
@dataclass
class Message:
    start: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False
    raw_head: bytes = b""

    @property
    def status(self) -> int:
        return int(self.start.split(" ")[1])

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    @property
    def names(self) -> list[str]:
        return [n.lower() for n, _ in self.headers]


def bytes_reader(raw: bytes) -> asyncio.StreamReader:
    """A reader over bytes already received in full."""
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    return reader


async def read_message(
    reader: asyncio.StreamReader, *, head_request: bool = False, is_request: bool = False
) -> Message:
    """One request or response, framed by Content-Length, chunked, or (response) close."""
    raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = raw_head.decode("latin-1").split("\r\n")[:-2]
    headers = [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
    msg = Message(lines[0], headers, raw_head=raw_head)
    if not is_request and (head_request or msg.status in (204, 304) or msg.status < 200):
        return msg
    te = msg.get("transfer-encoding")
    length = msg.get("content-length")
    if te is not None:
        msg.chunked = True
        parts = []
        while True:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
            size = int(size_line.split(b";")[0], 16)
            data = await asyncio.wait_for(reader.readexactly(size + 2), 5)
            if size == 0:
                break
            parts.append(data[:-2])
        msg.body = b"".join(parts)
    elif length is not None:
        msg.body = await asyncio.wait_for(reader.readexactly(int(length)), 5)
    elif not is_request:
        msg.body = await asyncio.wait_for(reader.read(), 5)
    return msg


class Client:
    """A raw client connection to the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head_request: bool = False) -> Message:
        return await read_message(self.reader, head_request=head_request)

    async def request(self, data: bytes, *, head_request: bool = False) -> Message:
        await self.send(data)
        return await self.response(head_request=head_request)

    async def at_eof(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), 2) == b""
        except (ConnectionResetError, TimeoutError):
            return False

    def close(self) -> None:
        self.writer.close()


# ---- a scripted upstream ------------------------------------------------------------------
Reply = Callable[[Message], bytes]


def ok_reply(msg: Message) -> bytes:
    body = json.dumps({"target": msg.start.split(" ")[1], "body": msg.body.decode("latin-1")})
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()


@dataclass
class Scripted:
    """A RawUpstream that parses each request fully and answers with `reply`, keep-alive."""

    reply: Reply = ok_reply
    requests: list[Message] = field(default_factory=list)
    upstream: RawUpstream | None = None

    async def behaviour(
        self, up: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                msg = await read_message(reader, is_request=True)
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            self.requests.append(msg)
            reply = self.reply(msg)
            writer.write(reply)
            await writer.drain()
            if b"\r\nconnection: close\r\n" in reply.partition(b"\r\n\r\n")[0].lower() + b"\r\n":
                return  # close-delimited

    async def start(self) -> int:
        self.upstream = await RawUpstream(self.behaviour).start()
        return self.upstream.port

    async def stop(self) -> None:
        if self.upstream is not None:
            await self.upstream.stop()

    @property
    def connections(self) -> int:
        return self.upstream.connections if self.upstream else 0


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    up = Scripted()
    yield up
    await up.stop()


# The headers the proxy itself sends upstream with every request.
FORWARDED = {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}


def single(upstream_port: int, extra: str = "", route: str = "") -> str:
    return (
        "upstreams:\n"
        f'  legacy: {{url: "http://127.0.0.1:{upstream_port}", role: legacy}}\n'
        + extra
        + (route or "default: {upstream: legacy}\n")
    )


# ---- exactly what the upstream receives ----------------------------------------------------
async def test_proxy_adds_only_forwarding_headers_and_request_id(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    resp = await client.request(b"GET /a/b?c=d HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    client.close()
    assert resp.status == 200
    (req,) = scripted.requests
    assert req.start == "GET /a/b?c=d HTTP/1.1"
    assert sorted(req.names) == sorted(
        ["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"]
    )
    assert req.get("x-forwarded-for") == "127.0.0.1"
    assert req.get("x-forwarded-proto") == "http"
    assert req.get("x-forwarded-host") == "shop.example"
    assert req.get("x-request-id") == resp.get("x-request-id")
    # No body framing was invented for a GET without a body.
    assert "content-length" not in req.names and "transfer-encoding" not in req.names


async def test_header_names_that_change_place_between_requests_are_read_afresh(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    # The connection remembers the names of the last request by place (on_header): names that
    # move, change case or change kind from one request to the next must be sorted anew.
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    heads = [
        b"X-Trace: a\r\nKeep-Alive: 5\r\n",
        b"Keep-Alive: 5\r\nX-Trace: b\r\n",
        b"X-STRANGLER-Shadow: 1\r\nX-Trace: c\r\n",
        b"x-trace: d\r\nX_Trace: e\r\n",
        b"X-Trace: f\r\nKEEP-ALIVE: 5\r\n",
    ]
    for head in heads:
        resp = await client.request(b"GET /h HTTP/1.1\r\nHost: h\r\n" + head + b"\r\n")
        assert resp.status == 200
    client.close()
    seen = [(sorted(set(req.names) - FORWARDED), req.get("x-trace")) for req in scripted.requests]
    assert seen == [(["x-trace"], value) for value in "abcdf"]


async def test_end_to_end_request_headers_pass_unchanged(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    await client.request(
        b"GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br\r\nUser-Agent: curl/8\r\n"
        b"X-Multi: 1\r\nX-Multi: 2\r\nAuthorization: Bearer t\r\nCookie: a=b\r\n\r\n"
    )
    client.close()
    (req,) = scripted.requests
    assert req.get("accept-encoding") == "br"
    assert req.get("user-agent") == "curl/8"
    assert req.get_all("x-multi") == ["1", "2"]
    assert req.get("authorization") == "Bearer t"
    assert req.get("cookie") == "a=b"


HOP_BY_HOP_REQUEST = (
    b"GET /h HTTP/1.1\r\nHost: h\r\n"
    b"Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n"
    b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\n"
    b"Trailer: X-T\r\nX_Under: 1\r\nX-Strangler-Fallback: forged\r\nX-Kept: yes\r\n\r\n"
)


async def test_hop_by_hop_request_headers_dropped(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    resp = await client.request(HOP_BY_HOP_REQUEST)
    assert resp.status == 200
    # keep-alive still works after it
    assert (await client.request(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n")).status == 200
    client.close()
    req = scripted.requests[0]
    dropped = {
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "x_under",
        "x-strangler-fallback",
    }
    assert not dropped & set(req.names)
    assert req.get("x-kept") == "yes"


async def test_non_websocket_upgrade_header_dropped(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    raw = await raw_exchange(
        proxy.port,
        b"GET /u HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    status, headers, _ = parse_response(raw)
    assert status == 200
    assert headers.get("connection") == "close"  # a refused upgrade ends the connection
    (req,) = scripted.requests
    assert not {"upgrade", "connection", "http2-settings"} & set(req.names)


def hop_by_hop_reply(msg: Message) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 10.1.2.3\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\n"
        b"Upgrade: h2c\r\nTE: trailers\r\nProxy-Authenticate: Basic\r\nX-Ok: 1\r\n"
        b"Content-Length: 2\r\n\r\nok"
    )


async def test_hop_by_hop_response_headers_dropped(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    scripted.reply = hop_by_hop_reply
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    resp = await client.request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    client.close()
    assert resp.status == 200 and resp.body == b"ok"
    assert sorted(resp.names) == ["content-length", "x-ok", "x-request-id"]


FORWARDING_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n"
)

FORWARDING_CASES = [
    # (id, trust_forwarded_headers, request, expected forwarding headers upstream)
    (
        "untrusted-replaced",
        False,
        FORWARDING_REQUEST,
        {
            "x-forwarded-for": ["127.0.0.1"],
            "x-forwarded-proto": ["http"],
            "x-forwarded-host": ["shop"],
            "forwarded": [],
            "x-real-ip": [],
        },
    ),
    (
        "trusted-appended",
        True,
        FORWARDING_REQUEST,
        {
            "x-forwarded-for": ["6.6.6.6, 127.0.0.1"],
            "x-forwarded-proto": ["https"],
            "x-forwarded-host": ["evil"],
        },
    ),
    (
        "trusted-without-client-values",
        True,
        b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n",
        {
            "x-forwarded-for": ["127.0.0.1"],
            "x-forwarded-proto": ["http"],
            "x-forwarded-host": ["shop"],
        },
    ),
]


@pytest.mark.parametrize(
    ("trust", "request_bytes", "expected"),
    [c[1:] for c in FORWARDING_CASES],
    ids=[c[0] for c in FORWARDING_CASES],
)
async def test_forwarding_headers(
    proxy_factory: ProxyFactory,
    scripted: Scripted,
    trust: bool,
    request_bytes: bytes,
    expected: dict[str, list[str]],
) -> None:
    extra = f"forwarding: {{trust_forwarded_headers: {str(trust).lower()}}}\n"
    proxy = await proxy_factory(single(await scripted.start(), extra=extra))
    client = await Client.open(proxy.port)
    await client.request(request_bytes)
    client.close()
    (req,) = scripted.requests
    for name, values in expected.items():
        assert req.get_all(name) == values, name


REQUEST_ID_CASES = [
    # (id, client header line, expected id upstream or None for "generated")
    ("valid-propagated", b"X-Request-ID: abc-123.def\r\n", "abc-123.def"),
    ("invalid-replaced", b"X-Request-ID: not valid!\r\n", None),
    ("too-long-replaced", b"X-Request-ID: " + b"a" * 200 + b"\r\n", None),
    ("absent-generated", b"", None),
]


@pytest.mark.parametrize(
    ("line", "expected"), [c[1:] for c in REQUEST_ID_CASES], ids=[c[0] for c in REQUEST_ID_CASES]
)
async def test_request_id_propagated_or_generated(
    proxy_factory: ProxyFactory, scripted: Scripted, line: bytes, expected: str | None
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    resp = await client.request(b"GET / HTTP/1.1\r\nHost: h\r\n" + line + b"\r\n")
    client.close()
    (req,) = scripted.requests
    upstream_id = req.get("x-request-id")  # exactly one
    assert upstream_id is not None
    assert resp.get("x-request-id") == upstream_id
    if expected is not None:
        assert upstream_id == expected
    else:
        assert len(upstream_id) >= 16 and upstream_id.isalnum()
    assert proxy.access_lines()[-1]["request_id"] == upstream_id


async def test_upstream_request_id_in_response_not_duplicated(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    def echo_id(msg: Message) -> bytes:
        rid = msg.get("x-request-id") or ""
        return f"HTTP/1.1 200 OK\r\nX-Request-ID: {rid}\r\nContent-Length: 0\r\n\r\n".encode()

    scripted.reply = echo_id
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    resp = await client.request(b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-ID: r-1\r\n\r\n")
    client.close()
    assert resp.status == 200
    assert resp.get_all("x-request-id") == ["r-1"]


QUERY_CASES = [
    ("encoded-slash-plus-semicolon", b"/q?a=%2F&b=x+y;c=1"),
    ("empty-query", b"/q?"),
    ("empty-pairs-and-bad-percent", b"/q?&&=&x=%zz&y=%"),
    ("odd-characters", b"/q?a='|'&b=[1]&c={x}&d=^`"),
    ("question-marks-and-slashes", b"/q?next=/a/../b?c"),
    ("case-of-percent-kept", b"/q?a=%2f%2F%e9"),
]


@pytest.mark.parametrize("target", [c[1] for c in QUERY_CASES], ids=[c[0] for c in QUERY_CASES])
async def test_query_forwarded_byte_for_byte(
    proxy_factory: ProxyFactory, scripted: Scripted, target: bytes
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    resp = await client.request(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    client.close()
    assert resp.status == 200
    (req,) = scripted.requests
    assert req.raw_head.split(b"\r\n")[0] == b"GET " + target + b" HTTP/1.1"


async def test_raw_non_ascii_query_rejected(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    # Not valid HTTP (RFC 3986 wants it percent-encoded): the parser refuses it rather than guess.
    proxy = await proxy_factory(single(await scripted.start()))
    raw = await raw_exchange(proxy.port, "GET /q?name=café HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert parse_response(raw)[0] == 400
    assert scripted.requests == []


# ---- unsafe targets -----------------------------------------------------------------------
UNSAFE_TARGETS = [
    # (id, target, kind)
    ("encoded-slash", b"/api/orders%2F..%2Fadmin", "encoded_slash"),
    ("encoded-slash-lower", b"/api/a%2fb", "encoded_slash"),
    ("encoded-backslash", b"/api/a%5Cb", "encoded_slash"),
    ("raw-backslash", b"/api/a\\b", "backslash"),
    ("encoded-nul", b"/api/a%00b", "nul"),
    ("fragment", b"/api/a#" + MARKER.encode(), "fragment"),
    ("double-encoded-dot", b"/api/%252e%252e/admin", "double_encoding"),
]


@pytest.mark.parametrize(
    ("target", "kind"), [c[1:] for c in UNSAFE_TARGETS], ids=[c[0] for c in UNSAFE_TARGETS]
)
async def test_unsafe_target_rejected_before_routing(
    proxy_factory: ProxyFactory, scripted: Scripted, target: bytes, kind: str
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    raw = await raw_exchange(
        proxy.port,
        b"GET " + target + b"/" + MARKER.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    status, headers, body = parse_response(raw)
    assert status == 400
    assert headers["connection"] == "close"
    assert json.loads(body)["error"] == "bad_request"
    assert MARKER.encode() not in raw
    assert scripted.requests == [] and scripted.connections == 0


async def test_dot_segments_never_reach_the_extracted_service(
    proxy_factory: ProxyFactory,
) -> None:
    legacy, orders = Scripted(), Scripted()
    legacy_port, orders_port = await legacy.start(), await orders.start()
    try:
        proxy = await proxy_factory(
            f"""
            upstreams:
              legacy: {{url: "http://127.0.0.1:{legacy_port}", role: legacy}}
              orders: {{url: "http://127.0.0.1:{orders_port}", role: extracted}}
            routes:
              - name: orders
                match: {{path_prefix: /api/orders}}
                upstream: orders
            default: {{upstream: legacy}}
            """
        )
        targets = [
            b"/api/orders/%2e%2e/admin",
            b"/api/orders/%2E%2E/admin",
            b"/api/orders/./../admin",
            b"/api/orders/.%2e/admin",
        ]
        client = await Client.open(proxy.port)
        for target in targets:
            resp = await client.request(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
            assert resp.status == 200
        client.close()
    finally:
        await legacy.stop()
        await orders.stop()
    assert orders.requests == []
    assert [r.start for r in legacy.requests] == ["GET /api/admin HTTP/1.1"] * len(targets)


M = MARKER.encode()
LOCAL_ERRORS = [
    # (id, raw request carrying the marker, status the proxy itself answers)
    ("control-byte-in-header", b"GET / HTTP/1.1\r\nHost: h\r\nX-Bad: " + M + b"\x01\r\n\r\n", 400),
    ("duplicate-host", b"GET / HTTP/1.1\r\nHost: " + M + b"\r\nHost: b\r\n\r\n", 400),
    ("host-with-slash", b"GET / HTTP/1.1\r\nHost: a/" + M + b"\r\n\r\n", 400),
    (
        "length-and-chunked",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\nX-M: " + M + b"\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "bad-content-length",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1" + M + b"\r\n\r\n",
        400,
    ),
    (
        "unknown-transfer-coding",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n"
        b"X-M: " + M + b"\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "body-over-limit",
        b"POST /" + M + b" HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n",
        413,
    ),
    ("uri-too-long", b"GET /" + M * 1000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    ("headers-too-large", b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + M * 4000 + b"\r\n\r\n", 431),
    ("not-http", M + b" / HTTP/1.1\r\n\r\n", 400),
    ("connect", b"CONNECT " + M + b":443 HTTP/1.1\r\nHost: " + M + b":443\r\n\r\n", 405),
]


@pytest.mark.parametrize(
    ("request_bytes", "status"), [c[1:] for c in LOCAL_ERRORS], ids=[c[0] for c in LOCAL_ERRORS]
)
async def test_local_errors_never_echo_the_request(
    proxy_factory: ProxyFactory, scripted: Scripted, request_bytes: bytes, status: int
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    raw = await raw_exchange(proxy.port, request_bytes)
    got, headers, body = parse_response(raw)
    assert got == status
    assert M not in raw
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) <= {"error", "status", "route", "kind", "request_id"}
    assert headers.get("connection") == "close"
    assert scripted.requests == []


# ---- framing: HEAD, 204, 304 and keep-alive -----------------------------------------------
def framing_reply(msg: Message) -> bytes:
    target = msg.start.split(" ")[1]
    if msg.start.startswith("HEAD"):
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\n"
    if target == "/204":
        return b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
    if target == "/304":
        return b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 55\r\n\r\n'
    return ok_reply(msg)


NO_BODY_CASES = [
    # (id, first request, status, expected headers subset)
    ("head", b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n", 200, {"content-length": "100"}),
    ("204", b"GET /204 HTTP/1.1\r\nHost: h\r\n\r\n", 204, {"x-a": "1"}),
    ("304", b'GET /304 HTTP/1.1\r\nHost: h\r\nIf-None-Match: "v1"\r\n\r\n', 304, {"etag": '"v1"'}),
]


@pytest.mark.parametrize(
    ("first", "status", "expected"),
    [c[1:] for c in NO_BODY_CASES],
    ids=[c[0] for c in NO_BODY_CASES],
)
async def test_no_body_responses_keep_the_connection_alive(
    proxy_factory: ProxyFactory,
    scripted: Scripted,
    first: bytes,
    status: int,
    expected: dict[str, str],
) -> None:
    scripted.reply = framing_reply
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    for _ in range(2):  # twice: the upstream connection is reused after it as well
        resp = await client.request(first, head_request=first.startswith(b"HEAD"))
        assert resp.status == status
        for name, value in expected.items():
            assert resp.get(name) == value
        assert "transfer-encoding" not in resp.names
        if status != 200:
            assert "content-length" not in resp.names
        # The very next bytes on this connection are the answer to the next request.
        follow = await client.request(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        assert follow.status == 200
        assert json.loads(follow.body)["target"] == "/next"
    client.close()
    assert scripted.connections == 1


# ---- chunked bodies and 100-continue ------------------------------------------------------
async def test_chunked_request_body_is_streamed_chunked(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    resp = await client.request(
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    assert resp.status == 200
    assert json.loads(resp.body)["body"] == "hello world"
    client.close()
    (req,) = scripted.requests
    assert req.chunked and req.get("transfer-encoding") == "chunked"
    assert "content-length" not in req.names


def chunked_reply(msg: Message) -> bytes:
    if msg.start.split(" ")[1] == "/close-delimited":
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        b"4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n"
    )


async def test_chunked_and_close_delimited_responses(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    scripted.reply = chunked_reply
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    resp = await client.request(b"GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n")
    assert resp.status == 200 and resp.chunked and resp.body == b"abcdefg"
    resp = await client.request(b"GET /close-delimited HTTP/1.1\r\nHost: h\r\n\r\n")
    assert resp.status == 200 and resp.body == b"until the end"
    # Re-framed as chunked for the client, so its connection survives the upstream's close.
    assert resp.chunked
    assert (await client.request(b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n")).body == b"abcdefg"
    client.close()


async def test_expect_100_continue(proxy_factory: ProxyFactory, scripted: Scripted) -> None:
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    await client.send(
        b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await client.response()
    assert interim.status == 100
    await client.send(b"hello")
    final = await client.response()
    assert final.status == 200 and json.loads(final.body)["body"] == "hello"
    client.close()
    (req,) = scripted.requests
    assert "expect" not in req.names
    assert req.get("content-length") == "5"


async def test_expect_over_limit_gets_413_without_100(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    route = "default: {upstream: legacy, max_body_bytes: 10}\n"
    proxy = await proxy_factory(single(await scripted.start(), route=route))
    raw = await raw_exchange(
        proxy.port,
        b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in raw
    assert json.loads(parse_response(raw)[2])["error"] == "body_too_large"
    assert scripted.requests == []


# ---- pipelining ---------------------------------------------------------------------------
@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    runner, port = await start_app(echo_app("legacy"))
    yield port
    await runner.cleanup()


async def test_pipelined_requests_answered_in_order(
    proxy_factory: ProxyFactory, echo_port: int
) -> None:
    proxy = await proxy_factory(single(echo_port))
    client = await Client.open(proxy.port)
    await client.send(
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    answers = [json.loads((await client.response()).body) for _ in range(3)]
    assert [(a["method"], a["path"], a["body_len"]) for a in answers] == [
        ("GET", "/1", 0),
        ("POST", "/2", 3),
        ("GET", "/3", 0),
    ]
    # And the connection is still good afterwards.
    again = json.loads((await client.request(b"GET /4 HTTP/1.1\r\nHost: h\r\n\r\n")).body)
    assert again["path"] == "/4"
    client.close()


async def test_pipelined_three_gets_one_write(proxy_factory: ProxyFactory, echo_port: int) -> None:
    proxy = await proxy_factory(single(echo_port))
    raw = await raw_exchange(
        proxy.port,
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    reader = bytes_reader(raw)
    paths = [json.loads((await read_message(reader)).body)["path"] for _ in range(3)]
    assert paths == ["/a", "/b", "/c"]
    assert await reader.read() == b""


async def test_echo_app_sanity_via_web(echo_port: int) -> None:
    # The echo backend answers directly, so failures above are the proxy's.
    raw = await raw_exchange(echo_port, b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert json.loads(parse_response(raw)[2])["path"] == "/x"


# ---- connection management ----------------------------------------------------------------
async def test_connection_close_and_http10(proxy_factory: ProxyFactory, scripted: Scripted) -> None:
    scripted.reply = chunked_reply
    proxy = await proxy_factory(single(await scripted.start()))
    # Connection: close is honoured after the response.
    client = await Client.open(proxy.port)
    resp = await client.request(b"GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert resp.body == b"abcdefg" and resp.get("connection") == "close"
    assert await client.at_eof()
    client.close()
    # HTTP/1.0 cannot take chunked framing: the body is delimited by the close.
    raw = await raw_exchange(proxy.port, b"GET /chunked HTTP/1.0\r\nHost: h\r\n\r\n")
    status, headers, body = parse_response(raw)
    assert status == 200 and body == b"abcdefg"
    assert "transfer-encoding" not in headers
    assert raw.startswith(b"HTTP/1.1 200 ")


async def test_version_is_read_per_request_when_keep_alive_is_asked_for(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    # A Connection header leaves the version open (1.0 and 2.0 keep alive with one too), so the
    # proxy asks the parser; without one, only HTTP/1.1 keeps the connection alive.
    scripted.reply = chunked_reply
    proxy = await proxy_factory(single(await scripted.start()))
    # HTTP/1.0 asking for keep-alive still cannot take chunked framing: close-delimited.
    raw = await raw_exchange(
        proxy.port, b"GET /chunked HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
    )
    status, headers, body = parse_response(raw)
    assert status == 200 and body == b"abcdefg"
    assert "transfer-encoding" not in headers
    # llhttp reads keep-alive from Proxy-Connection too: the same, whichever header asks.
    raw = await raw_exchange(
        proxy.port, b"GET /chunked HTTP/1.0\r\nHost: h\r\nProxy-Connection: keep-alive\r\n\r\n"
    )
    status, headers, body = parse_response(raw)
    assert status == 200 and body == b"abcdefg"
    assert "transfer-encoding" not in headers
    # HTTP/2.0 and HTTP/0.9 in a request line (llhttp parses both) are refused, keep-alive or not.
    for line, header in [
        (b"GET / HTTP/2.0", b"Connection"),
        (b"GET / HTTP/2.0", b"Proxy-Connection"),
        (b"GET / HTTP/0.9", b"Proxy-Connection"),
    ]:
        head = line + b"\r\nHost: h\r\n" + header + b": keep-alive\r\n\r\n"
        assert parse_response(await raw_exchange(proxy.port, head))[0] == 400, head
    # Pipelined 1.1 then 1.0: each answer is framed for its own request's version.
    raw = await raw_exchange(
        proxy.port,
        b"GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /chunked HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
    )
    reader = bytes_reader(raw)
    first = await read_message(reader)
    assert first.get("transfer-encoding") == "chunked" and first.body == b"abcdefg"
    rest = await reader.read()
    assert rest.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding" not in rest.lower()
    assert rest.endswith(b"\r\n\r\nabcdefg")


async def test_absolute_form_target_routes_on_its_authority(
    proxy_factory: ProxyFactory, scripted: Scripted
) -> None:
    other = Scripted()
    other_port = await other.start()
    try:
        proxy = await proxy_factory(
            f"""
            upstreams:
              legacy: {{url: "http://127.0.0.1:{await scripted.start()}", role: legacy}}
              shop: {{url: "http://127.0.0.1:{other_port}", role: extracted}}
            routes:
              - name: shop
                match: {{host: shop.example}}
                upstream: shop
            default: {{upstream: legacy}}
            """
        )
        client = await Client.open(proxy.port)
        resp = await client.request(
            b"GET http://shop.example/p?q=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n"
        )
        client.close()
    finally:
        await other.stop()
    assert resp.status == 200
    (req,) = other.requests
    assert req.start == "GET /p?q=1 HTTP/1.1"  # origin-form upstream
    assert req.get("x-forwarded-host") == "shop.example"
    assert scripted.requests == []


async def test_truncated_upstream_response_cuts_the_client(
    proxy_factory: ProxyFactory,
) -> None:
    async def truncated(
        up: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await up.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()

    upstream = await RawUpstream(truncated).start()
    try:
        proxy = await proxy_factory(single(upstream.port))
        raw = await raw_exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    finally:
        await upstream.stop()
    # The response already started: no second response is glued on, the connection is cut.
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert raw.count(b"HTTP/1.1") == 1
    assert raw.endswith(b"abc")


WS_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


@pytest.mark.parametrize("pipelined", [False, True], ids=["after-response", "pipelined"])
async def test_refused_websocket_upgrade_keeps_speaking_http(
    proxy_factory: ProxyFactory, scripted: Scripted, pipelined: bool
) -> None:
    def refuse(msg: Message) -> bytes:
        target = msg.start.split(" ")[1].encode()
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(target), target)

    scripted.reply = refuse
    proxy = await proxy_factory(single(await scripted.start()))
    client = await Client.open(proxy.port)
    follow = b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n"
    await client.send(WS_UPGRADE + follow if pipelined else WS_UPGRADE)
    first = await client.response()
    assert (first.status, first.body) == (404, b"/ws")
    if not pipelined:
        await client.send(follow)
    second = await client.response()
    client.close()
    assert (second.status, second.body) == (404, b"/again")
    assert [r.start.split(" ")[1] for r in scripted.requests] == ["/ws", "/again"]


async def test_many_pipelined_requests_in_one_write(
    proxy_factory: ProxyFactory, echo_port: int
) -> None:
    proxy = await proxy_factory(single(echo_port))
    client = await Client.open(proxy.port)
    await client.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(50)))
    paths = [json.loads((await client.response()).body)["path"] for _ in range(50)]
    client.close()
    assert paths == [f"/{i}" for i in range(50)]
