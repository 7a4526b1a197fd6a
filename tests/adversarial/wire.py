"""Tools for the hostile suite: a recording upstream, a raw client, a response splitter, configs.

`RecordingUpstream` keeps every byte each upstream connection received and parses them with
httptools, so a test can assert "nothing forwarded" (no connection, no byte), "exactly these
requests, in this order", or "the upstream connection was closed" (request aborted). How it answers
is a `Reply` the test supplies: called once per complete request, it writes, closes or resets.
Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

from tests.harness import free_port

MARKER = "zq-marker-5d1c"


# ---- upstream side ----------------------------------------------------------------------------
@dataclass
class UpRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None

    @property
    def names(self) -> list[str]:
        return [n.lower() for n, _ in self.headers]


class UpConn(asyncio.Protocol):
    """One upstream connection: records bytes, parses requests, answers through the reply."""

    def __init__(self, upstream: RecordingUpstream) -> None:
        self.upstream = upstream
        self.data = bytearray()
        self.requests: list[UpRequest] = []
        self.heads = 0  # request heads seen (a body may still be arriving)
        self.closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self.parse_error = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.upstream.conns.append(self)

    def data_received(self, data: bytes) -> None:
        if self.upstream.record:
            self.data += data
        if self.parse_error:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.parse_error = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.heads += 1
        if self.upstream.on_head is not None:
            self.upstream.on_head(self)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        req = UpRequest(method, self._url.decode("latin-1"), self._headers, b"".join(self._body))
        self.upstream.served += 1
        if self.upstream.record:
            self.requests.append(req)
            self.upstream.requests.append(req)
        self.upstream.reply(req, self)

    # ---- what a reply can do ----
    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0)."""
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


Reply = Callable[[UpRequest, UpConn], None]


def json_body(req: UpRequest) -> bytes:
    return f'{{"target": "{req.target}", "n": {len(req.body)}}}'.encode()


def ok(req: UpRequest, conn: UpConn) -> None:
    body = json_body(req)
    if req.method == "HEAD":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        return
    conn.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(body)
        + body
    )


def silent(req: UpRequest, conn: UpConn) -> None:
    return None


class RecordingUpstream:
    def __init__(self, reply: Reply = ok, *, record: bool = True) -> None:
        self.reply = reply
        self.record = record  # False: count requests only (a soak must not grow with them)
        self.served = 0
        self.on_head: Callable[[UpConn], None] | None = None
        self.conns: list[UpConn] = []
        self.requests: list[UpRequest] = []  # complete requests, all connections, arrival order
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> RecordingUpstream:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: UpConn(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in self.conns:
            conn.close()

    @property
    def connections(self) -> int:
        return len(self.conns)

    @property
    def received(self) -> bytes:
        return b"".join(bytes(c.data) for c in self.conns)

    @property
    def heads(self) -> int:
        return sum(c.heads for c in self.conns)


class RefusedPort:
    """A loopback port nobody listens on (bound then closed)."""

    def __init__(self) -> None:
        # Never a port handed out before in this run (a proxy could be listening there later).
        self.port = free_port()


# ---- client side --------------------------------------------------------------------------------
@dataclass
class Resp:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None


class _ResponseCollector:
    def __init__(self) -> None:
        self.done: list[Resp] = []
        self.current: Resp | None = None
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.current = Resp(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.current is not None
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body += body

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.done.append(self.current)
        self.current = None


def split_responses(raw: bytes) -> tuple[list[Resp], bool]:
    """The complete responses in `raw`, and whether anything followed them (partial or garbage)."""
    collector = _ResponseCollector()
    try:
        collector.parser.feed_data(raw)
    except httptools.HttpParserError:
        return collector.done, True
    return collector.done, collector.current is not None


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

    async def read_all(self, wait: float = 3.0) -> tuple[bytes, bool]:
        """Read until the proxy closes (True) or `wait` seconds pass (False)."""
        chunks: list[bytes] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        try:
            while True:
                chunk = await asyncio.wait_for(self.reader.read(65536), end - loop.time())
                if not chunk:
                    return b"".join(chunks), True
                chunks.append(chunk)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionError:
            return b"".join(chunks), True

    async def read_responses(self, count: int, wait: float = 3.0) -> list[Resp]:
        raw = b""
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        while True:
            done, _ = split_responses(raw)
            if len(done) >= count:
                return done
            chunk = await asyncio.wait_for(self.reader.read(65536), max(end - loop.time(), 0.01))
            if not chunk:
                return done
            raw += chunk

    def close(self) -> None:
        self.writer.close()


async def exchange(port: int, data: bytes, wait: float = 3.0) -> tuple[bytes, bool]:
    """Send `data`, read until close or timeout: (bytes, closed_by_proxy)."""
    client = await Client.open(port)
    try:
        await client.send(data)
        return await client.read_all(wait)
    finally:
        client.close()


# ---- configs ------------------------------------------------------------------------------------
def config(
    *,
    legacy: int,
    orders: int | None = None,
    limits: dict[str, str] | None = None,
    route: dict[str, str] | None = None,
    extra: str = "",
) -> str:
    """Two upstreams (legacy behind the default route, orders on /api/orders), short timeouts."""
    limit_lines = {"header_timeout": "500ms", "body_timeout": "500ms", **(limits or {})}
    lines = ["limits:"]
    lines += [f"  {key}: {value}" for key, value in limit_lines.items()]
    lines += [
        "upstreams:",
        f'  legacy: {{url: "http://127.0.0.1:{legacy}", role: legacy, timeout: 1s}}',
        f'  orders: {{url: "http://127.0.0.1:{orders or legacy}", role: extracted, timeout: 1s}}',
        "routes:",
        "  - name: orders",
        "    match: {path_prefix: /api/orders}",
        "    upstream: orders",
    ]
    lines += [f"    {key}: {value}" for key, value in (route or {}).items()]
    lines.append("default: {upstream: legacy}")
    return "\n".join(lines) + "\n" + extra
