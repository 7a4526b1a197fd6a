"""The Python ceiling of the benchmark: the leanest proxy asyncio, httptools and uvloop allow.

One asyncio Protocol per client connection and per pooled upstream connection, httptools parsing
on both sides, callbacks only (no task or future per request), one upstream, no routing, no
metrics, no logging, no timeouts. It rebuilds both heads (hop-by-hop headers dropped, like any
proxy) and forwards Content-Length and chunked bodies as they arrive. It is what issue 10 calls
"asyncio Protocol server + lean upstream, httptools on both sides, callbacks only, uvloop": the
figure strangler's data plane would reach with every feature free. Requests only, no streaming
run (no flow control).

Run: ``python bench/lean_proxy.py --port P --upstream-port B``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque

import httptools
import uvloop

HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"})


class Upstream(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.head: list[bytes] = []
        self.chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.client is not None:
            self.client.transport.close()

    def on_message_begin(self) -> None:
        self.head = [b"HTTP/1.1 %d OK\r\n" % 200]
        self.chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"transfer-encoding":
            self.chunked = True
        elif lower not in HOP:
            self.head.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        head = self.head
        head[0] = b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code()
        if self.chunked:
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        assert self.client is not None
        self.client.transport.write(b"".join(head))

    def on_body(self, body: bytes) -> None:
        assert self.client is not None
        if self.chunked:
            self.client.transport.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.client.transport.write(body)

    def on_message_complete(self) -> None:
        client = self.client
        assert client is not None
        if self.chunked:
            client.transport.write(b"0\r\n\r\n")
        self.client = None
        self.pool.idle.append(self)
        client.response_done()


class Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.loop = loop
        self.port = port
        self.idle: list[Upstream] = []

    def send(self, client: Client, data: bytes) -> None:
        if self.idle:
            upstream = self.idle.pop()
            upstream.client = client
            client.upstream = upstream
            assert upstream.transport is not None
            upstream.transport.write(data)
            return
        upstream = Upstream(self)
        upstream.client = client
        client.upstream = upstream

        async def connect() -> None:
            await self.loop.create_connection(lambda: upstream, "127.0.0.1", self.port)
            assert upstream.transport is not None
            upstream.transport.write(data)

        self.loop.create_task(connect())


class Client(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.upstream: Upstream | None = None
        self.head: list[bytes] = []
        self.url = b""
        self.chunked = False
        self.queue: deque[bytes] = deque()
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def on_message_begin(self) -> None:
        self.head = []
        self.url = b""
        self.chunked = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"transfer-encoding":
            self.chunked = True
        elif lower not in HOP:
            self.head.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        method = self.parser.get_method()
        self.head.insert(0, b"%s %s HTTP/1.1\r\n" % (method, self.url))
        if self.chunked:
            self.head.append(b"transfer-encoding: chunked\r\n")
        self.head.append(b"\r\n")
        self.write_up(b"".join(self.head))

    def on_body(self, body: bytes) -> None:
        self.write_up(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)

    def on_message_complete(self) -> None:
        if self.chunked:
            self.write_up(b"0\r\n\r\n")
        self.busy = True

    def write_up(self, data: bytes) -> None:
        if self.busy or self.queue:
            self.queue.append(data)  # pipelined: waits for the response in flight
        elif self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)
        else:
            self.pool.send(self, data)

    def response_done(self) -> None:
        self.upstream = None
        self.busy = False
        if not self.parser.should_keep_alive():
            self.transport.close()
            return
        queued, self.queue = self.queue, deque()
        for data in queued:
            self.write_up(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        pool = Pool(loop, args.upstream_port)
        server = await loop.create_server(
            lambda: Client(pool), "127.0.0.1", args.port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
