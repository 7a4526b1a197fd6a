"""Pooled HTTP/1.1 connections to one upstream, driven by callbacks (the upstream half of the data
plane).

One `UpstreamConnection` (an asyncio Protocol with an httptools response parser) carries one request
at a time and reports to a `ResponseSink`: the response head, body chunks, the end, or a failure
with its kind (`refused`, `reset`, `timeout`, `malformed`). The pool keeps idle keep-alive
connections and opens new ones on demand.

Invariants:
- a connection goes back to the pool only after its response was read to its exact end, with
  keep-alive, and with no byte beyond it; any oddity (bytes while idle, a body after a HEAD
  response, a parse error, an early close) closes it;
- a failure is reported once, and only while a sink is attached;
- nothing here allocates a task or a future per request: connecting uses one task per new
  connection, everything else is callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import httptools

__all__ = ["ResponseSink", "UpstreamConnection", "UpstreamPool"]


class ResponseSink:
    """What an `UpstreamConnection` reports to: the exchange, or a shadow copy's collector.

    A base class rather than a typing.Protocol: the compiled build then calls these methods
    through the class's method table instead of a generic Python method call.
    """

    __slots__ = ()

    def on_upstream_head(
        self, conn: UpstreamConnection, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        raise NotImplementedError

    def on_upstream_body(self, data: bytes) -> None:
        raise NotImplementedError

    def on_upstream_complete(self) -> None:
        raise NotImplementedError

    def on_upstream_error(self, kind: str, response_started: bool) -> None:
        raise NotImplementedError

    def on_upstream_upgrade(self, conn: UpstreamConnection, rest: bytes) -> None:
        raise NotImplementedError

    def flush_output(self) -> None:
        raise NotImplementedError

    def pause_client_reading(self) -> None:
        raise NotImplementedError

    def resume_client_reading(self) -> None:
        raise NotImplementedError


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_head_headers",
        "_head_request",
        "_headers",
        "_length_unknown",
        "_name",
        "_parser",
        "_pool",
        "_status",
        "broken",
        "closed",
        "head_seen",
        "reused",
        "sink",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.sink: ResponseSink | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._head_request = False
        self.head_seen = False
        self.broken = False
        self.closed = False
        self.reused = False
        self.tunnel: Callable[[bytes], None] | None = None
        self._length_unknown = False
        self._head_headers: list[tuple[bytes, bytes]] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check here.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel(data)
            return
        if self.sink is None:
            # Bytes while idle: the upstream is confused (or sent more than it framed).
            self.broken = True
            self.close()
            return
        reader = self.sink
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            sink = self.sink
            self.sink = None
            if sink is not None:
                sink.on_upstream_upgrade(self, data[exc.args[0] :])
        except httptools.HttpParserError:
            self._fail("malformed")
        # Head and body pieces parsed from this read leave in one write. A response that ended or
        # failed in this read was flushed (or discarded) by its sink already.
        if self.sink is reader:
            reader.flush_output()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        if self.tunnel is not None:
            self.tunnel(b"")
            self.tunnel = None
            return
        if self.sink is not None:
            # A read-until-close body ends here cleanly; anything else is a reset.
            self._parser_eof()

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.pause_client_reading()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.resume_client_reading()

    # httptools callbacks (no on_status: httptools calls only the callbacks a protocol defines)
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.sink is None:
            self.close()
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._headers = []
            return  # interim responses are not forwarded
        self._status = status
        self.head_seen = True
        headers, self._headers = self._headers, []
        # Whether the body runs until the connection closes matters only if it closes: the
        # headers are looked at then (_parser_eof), not on every response.
        self._length_unknown = not self._head_request and status not in (204, 304)
        self._head_headers = headers
        if self.sink is not None:
            self.sink.on_upstream_head(self, status, headers)
        if self._head_request and self.sink is not None and status != 101:
            # A HEAD response has no body whatever its headers say; llhttp cannot be told, so
            # the response ends here and a fresh parser takes the next one.
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.sink is None:
            self.close()  # a body after a HEAD response's end: never reused, never left open
            return
        self.sink.on_upstream_body(body)

    def on_message_complete(self) -> None:
        if self._status < 200 and self._status != 101 and not self.head_seen:
            return
        if self.sink is None:
            return
        if self._status == 101:
            return  # the upgrade exception hands over the connection
        self._finish()

    # driving
    def send(self, sink: ResponseSink, head: bytes, head_request: bool) -> None:
        self.sink = sink
        self._head_request = head_request
        self.head_seen = False
        self._status = 0
        assert self.transport is not None
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def give_back(self) -> None:
        """Return an unused connection to its pool."""
        self._pool.release(self)

    def detach(self) -> None:
        """Abandon the current exchange: the connection cannot be reused."""
        self.sink = None
        self.close()

    def close(self) -> None:
        self.broken = True
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _finish(self) -> None:
        sink = self.sink
        self.sink = None
        keep = self._parser.should_keep_alive() and not self.broken and not self._head_request
        if self._head_request:
            self._parser = httptools.HttpResponseParser(self)
            keep = not self.broken
        if sink is not None:
            sink.on_upstream_complete()
        if keep and not self.closed:
            # Defer: bytes still being parsed in this feed_data would arrive while idle.
            self._pool.release(self)
        else:
            self.close()

    def _parser_eof(self) -> None:
        sink = self.sink
        if sink is None:
            return
        self.sink = None
        if (
            self.head_seen
            and self._length_unknown
            and not any(
                n.lower() in (b"content-length", b"transfer-encoding")
                for n, _ in self._head_headers
            )
        ):
            # httptools has no finish(): a body with neither length nor chunking ends at close.
            sink.on_upstream_complete()
            return
        sink.on_upstream_error("reset", self.head_seen)

    def _fail(self, kind: str) -> None:
        sink = self.sink
        self.sink = None
        self.close()
        if sink is not None:
            sink.on_upstream_error(kind, self.head_seen)


class UpstreamPool:
    """Idle keep-alive connections to one host:port, opened on demand."""

    def __init__(self, host: str, port: int, *, max_idle: int, connect_timeout: float) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._idle: list[UpstreamConnection] = []
        self._all: set[UpstreamConnection] = set()
        self.closed = False

    def acquire(
        self,
        on_ready: Callable[[UpstreamConnection], None],
        on_error: Callable[[str], None],
    ) -> Callable[[], None] | None:
        """Call on_ready with a connection now (idle one) or later; returns a canceller if later."""
        conn = self.take_idle()
        if conn is not None:
            on_ready(conn)
            return None
        return self.connect(on_ready, on_error)

    def take_idle(self) -> UpstreamConnection | None:
        """An idle keep-alive connection ready for a request (marked reused), or None."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.broken:
                conn.reused = True
                return conn
        return None

    def connect(
        self,
        on_ready: Callable[[UpstreamConnection], None],
        on_error: Callable[[str], None],
    ) -> Callable[[], None]:
        """Open a new connection; on_ready or on_error is called later. Returns a canceller."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._connect())
        cancelled = False

        def done(t: asyncio.Task[UpstreamConnection]) -> None:
            if cancelled:
                if not t.cancelled() and t.exception() is None:
                    self.release(t.result())
                return
            if t.cancelled():
                on_error("timeout")
                return
            exc = t.exception()
            if exc is None:
                on_ready(t.result())
            elif isinstance(exc, TimeoutError):
                on_error("timeout")
            else:
                on_error("refused")

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True

        task.add_done_callback(done)
        return cancel

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(self), self.host, self.port
            )
        self._all.add(conn)
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        if self.closed or conn.closed or conn.broken or len(self._idle) >= self.max_idle:
            conn.close()
            return
        conn.sink = None
        self._idle.append(conn)

    def _forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    def close(self) -> None:
        self.closed = True
        for conn in list(self._all):
            conn.close()
        self._idle.clear()

    def close_idle(self) -> None:
        """Retire the pool after a reload: idle connections close now, busy ones when released."""
        self.closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
