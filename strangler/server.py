"""The client half of the data plane: one asyncio Protocol per client connection, parsed by
httptools.

A `ClientConnection` parses requests, enforces the edge limits and timeouts, routes each request on
the runtime snapshot current when its head completed (`strangler.dispatch`), hands it to an
`Exchange`, and writes the response back with the proxy's own framing. Its deadlines share one
timer handle (`strangler.deadlines`).

Invariants:
- responses go out in request order: only the oldest request is being served; pipelined requests
  parsed meanwhile wait in a queue, and reading pauses once one is complete, which bounds memory;
- every error the proxy generates is a small JSON body that never echoes the request, and every
  framing or parse error closes the connection;
- one snapshot per request: a reload never changes the route of a request already routed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import TYPE_CHECKING, Final

import httptools

from strangler import headers as hdr
from strangler.accesslog import quote_json
from strangler.deadlines import ConnectionDeadlines
from strangler.dispatch import dispatch_request
from strangler.errors import error_response
from strangler.exchange import Exchange
from strangler.request import RequestHead

if TYPE_CHECKING:
    from strangler.runtime import DataPlane
    from strangler.upstream import UpstreamConnection

__all__ = ["ClientConnection", "RequestHead"]

_CHUNK_END: Final = b"0\r\n\r\n"
_NO_BODY_STATUS: Final = frozenset({204, 304})


_Head = tuple[bytes, bytes, list[tuple[bytes, bytes]], str, bool, bool]


class _Incoming:
    """A request parsed while an earlier one is still being answered (pipelining)."""

    __slots__ = ("body", "complete", "head")

    def __init__(self, head: _Head) -> None:
        self.head = head
        self.body: list[bytes] = []
        self.complete = False


class ClientConnection(ConnectionDeadlines, asyncio.Protocol):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self._init_deadlines(plane.loop)
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = "-"
        self.peer_b = b"-"
        self.peer_json = b'"-"'
        self.closed = False
        self.current: Exchange | None = None
        self.queue: deque[_Incoming] = deque()
        self.incoming: _Incoming | None = None
        self.url = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.header_bytes = 0
        self.saw_upgrade = False  # an Upgrade header in the head being parsed
        self.saw_connection = False  # a Connection or Proxy-Connection header in the head
        self.seen_names: list[bytes] = []  # header names of the last request, as sent
        self.seen_lowered: list[bytes] = []  # and lower-cased
        self.version = "1.1"  # the HTTP version of the request being answered
        self.in_head = False
        self.paused = False
        self.write_paused = False
        self.keep_alive = True
        self.body_limit = 0
        self.body_seen = 0
        self.chunked_response = False
        self.out: list[bytes] = []  # response bytes of the current upstream read (flush_out)
        self.upgrading = False  # a WebSocket upgrade is waiting for the upstream's answer
        self.tunnel_conn: UpstreamConnection | None = None
        self.tunnel_pending = b""
        self.last_host_raw: bytes | None = None  # the last Host value validated, and its text
        self.last_host = ""
        plane.connections.add(self)

    # ---- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check here.
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0])
            self.peer_b = self.peer.encode()
            self.peer_json = quote_json(self.peer).encode("ascii")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._set_deadline("idle", self.plane.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.upgrading:
            # WebSocket frames sent before the upstream's 101: kept for the tunnel.
            self.tunnel_pending += data
            if len(self.tunnel_pending) > 65536:
                self._pause()
            return
        if self.in_head or self.current is None:
            self.head_bytes += len(data)
            if self.head_bytes > self.plane.head_limit and self.in_head:
                self._reject(431, "headers_too_large")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_rest(data[exc.args[0] :])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self._reject(cause.status, cause.error)
            else:
                self.plane.log_internal_error(cause)
                self._reject(400, "bad_request")
        except httptools.HttpParserError:
            self._reject(400, "bad_request")
        if self.in_head and self.head_bytes > self.plane.head_limit and not self.closed:
            # The first read of a message is counted before the parser sees it begin.
            self._reject(431, "headers_too_large")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self.plane.connections.discard(self)
        current = self.current
        self.current = None
        if current is not None and not current.done:
            current.abandon()
            self.plane.record_abandoned(current)
        self.queue.clear()
        tunnel = self.tunnel_conn
        if tunnel is not None:
            # A WebSocket tunnel ends on both sides when the client goes away.
            self.tunnel_conn = None
            tunnel.tunnel = None
            tunnel.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        current = self.current
        if current is not None and current.conn is not None:
            current.conn.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        current = self.current
        if current is not None and current.conn is not None:
            current.conn.resume_reading()

    # ---- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_head = True
        self.url = b""
        self.raw_headers = []
        self.header_bytes = 0
        self.saw_upgrade = False
        self.saw_connection = False
        if self.deadline_kind == "idle":
            self._set_deadline("header", self.plane.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.plane.max_request_line:
            raise _Reject(414, "uri_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a chunked body's trailers: dropped, never headers of a queued request
        raw = self.raw_headers
        plane = self.plane
        if len(raw) >= plane.max_headers:
            raise _Reject(431, "too_many_headers")
        # Control bytes in values (all but HTAB) are refused by llhttp itself, with a 400.
        # data_received only sees the head size once a message began: a whole oversized head
        # arriving in one read is caught here.
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > plane.max_header_bytes:
            raise _Reject(431, "headers_too_large")
        # A client sends its header names in the same order request after request: the name
        # at this place last time, if equal, gives its lower-case form without a call.
        index = len(raw)
        seen = self.seen_names
        if index < len(seen) and seen[index] == name:
            lowered = self.seen_lowered[index]
        else:
            lowered = name.lower()
            if index < len(seen):
                seen[index] = name
                self.seen_lowered[index] = lowered
            elif index < hdr.MEMO_NAMES:
                seen.append(name)
                self.seen_lowered.append(lowered)
        if lowered == b"upgrade":
            self.saw_upgrade = True
        elif lowered == b"connection" or lowered == b"proxy-connection":
            self.saw_connection = True  # llhttp reads keep-alive from both
        raw.append((lowered, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        parser = self.parser
        # llhttp upgrades a request with an Upgrade header (or CONNECT, refused at dispatch
        # whatever this says): asked only then, one call into the parser fewer per request.
        upgrade = self.saw_upgrade and parser.should_upgrade()
        keep_alive = parser.should_keep_alive()
        # llhttp accepts HTTP/0.9, 1.0, 1.1 and 2.0, and keeps a connection alive without a
        # Connection (or Proxy-Connection) header only for 1.1: then the version is known
        # without get_http_version(),
        # which formats a new string with str.format (about 2,000 instructions) on every call.
        version = "1.1" if keep_alive and not self.saw_connection else parser.get_http_version()
        if self.current is not None or self.queue:
            self.incoming = _Incoming(
                (parser.get_method(), self.url, self.raw_headers, version, keep_alive, upgrade)
            )
            self.queue.append(self.incoming)
            return
        self.incoming = None
        method = parser.get_method()
        dispatch_request(self, method, self.url, self.raw_headers, version, keep_alive, upgrade)

    def on_body(self, body: bytes) -> None:
        self.body_seen += len(body)
        if self.incoming is not None:
            self.incoming.body.append(body)
            return
        if self.body_seen > self.body_limit:
            raise _Reject(413, "body_too_large")
        self._set_deadline("body", self.plane.body_timeout)
        current = self.current
        if current is not None and not current.done:
            current.request_body(body)

    def on_message_complete(self) -> None:
        if self.incoming is not None:
            self.incoming.complete = True
            self.incoming = None
            self._pause()
            return
        current = self.current
        if current is not None:
            # A bodiless request was complete at dispatch (its shadow copy already started).
            if current.has_body and not current.done:
                current.request_complete()
            if self.deadline_kind == "body":
                self._set_deadline("response", 0.0)

    # ---- dispatch (strangler.dispatch) -----------------------------------------------------
    def _in_flight(self) -> Exchange | None:
        # A call, not `self.current`: after a check that it is None, a compiled build (mypyc)
        # would take the narrowed type at its word and never read it again.
        return self.current

    # ---- response writing (called by the exchange) --------------------------------------
    def send_response_head(self, ex: Exchange, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        # The scan renders the kept upstream headers as it classifies them: one pass.
        parts, length, chunked = hdr.scan_response(status, raw, ex.upstream.response_kinds)
        if ex.response_extra:
            for name, value in ex.response_extra:
                parts += (name, b": ", value, b"\r\n")
        if ex.fallback_reason is not None:
            parts += (b"x-strangler-fallback: ", ex.fallback_reason.encode(), b"\r\n")
        framing = b""
        self.chunked_response = False
        if status == 101:
            parts.append(b"connection: upgrade\r\nupgrade: websocket\r\n")
        elif ex.head_only or status in _NO_BODY_STATUS:
            if length is not None and status not in _NO_BODY_STATUS:
                framing = b"content-length: " + length + b"\r\n"
        elif length is not None and not chunked:
            framing = b"content-length: " + length + b"\r\n"
        elif self.keep_alive and self.version == "1.1":
            framing = b"transfer-encoding: chunked\r\n"
            self.chunked_response = True
        else:
            self.keep_alive = False
        if not self.keep_alive and status != 101:
            framing += b"connection: close\r\n"
        ex.sent_any = True
        parts.append(b"x-request-id: %s\r\n%s\r\n" % (ex.request_id, framing))
        # The parts go out as they are: joined once with the body read along (flush_out).
        self.out.extend(parts)

    def send_response_body(self, ex: Exchange, data: bytes) -> None:
        if self.chunked_response:
            self.out.append(b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            self.out.append(data)

    def flush_out(self) -> None:
        """Write what the response produced during one upstream read, in one system call."""
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._write(data)

    def response_complete(self, ex: Exchange) -> None:
        out = self.out
        if self.chunked_response:
            out.append(_CHUNK_END)
            self.chunked_response = False
        if out:  # flush_out and _write, inline: this runs once per response
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if self.transport is not None and not self.closed:
                self.transport.write(data)
        self.plane.record(ex, self.peer, self.peer_json)
        self._next(ex)

    def abort_response(self, ex: Exchange) -> None:
        self.out.clear()
        self.plane.record(ex, self.peer, self.peer_json, status_override=ex.status or 502)
        self.current = None
        self._close(abort=True)

    def send_error(
        self,
        ex: Exchange,
        status: int,
        error: str,
        *,
        route: str | None,
        kind: str | None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        ex.status = status
        if ex.has_body and not ex.body_done:
            self.keep_alive = False  # the rest of the body is not worth reading
        self._write(
            error_response(
                status,
                error,
                request_id=ex.request_id,
                route=route,
                kind=kind,
                extra=extra,
                close=not self.keep_alive,
            )
        )
        self.plane.record(ex, self.peer, self.peer_json, error=kind or error)
        self._next(ex)

    def start_tunnel(self, ex: Exchange, conn: UpstreamConnection, rest: bytes) -> None:
        self.flush_out()  # the 101 head
        self.plane.record(ex, self.peer, self.peer_json)
        self._cancel_timer()
        self.current = None
        transport = self.transport
        assert transport is not None

        def to_client(data: bytes) -> None:
            if data:
                transport.write(data)
            else:
                self._close(abort=False)

        conn.tunnel = to_client
        self.tunnel_conn = conn
        if rest:
            transport.write(rest)
        pending = self.tunnel_pending
        self.tunnel_pending = b""
        self.upgrading = False
        if pending:
            conn.write(pending)
        self.data_received = self._tunnel_data  # type: ignore[method-assign]
        self.resume_reading()

    def _tunnel_data(self, data: bytes) -> None:
        if self.tunnel_conn is not None:
            self.tunnel_conn.write(data)

    def _upgrade_rest(self, rest: bytes) -> None:
        self.tunnel_pending = rest
        current = self.current
        self.upgrading = current is not None and current.upgrade and not current.done

    # ---- connection state ---------------------------------------------------------------
    def _next(self, ex: Exchange) -> None:
        self.current = None
        if not self.keep_alive or self.closed:
            self._close(abort=False)
            return
        self._set_deadline("idle", self.plane.idle_timeout, ex.end)  # the answer's end, if read
        while self.queue and self.current is None and not self.closed:
            item = self.queue.popleft()
            method, url, raw, version, keep_alive, upgrade = item.head
            dispatch_request(self, method, url, raw, version, keep_alive, upgrade)
            current = self._in_flight()  # dispatch_request may have set it
            if current is None:
                continue
            for chunk in item.body:
                if not current.done:
                    current.request_body(chunk)
            if item.complete and not current.done:
                current.request_complete()
        self.upgrading = False
        pending = self.tunnel_pending
        if pending and not self.closed:
            # A refused upgrade: the bytes after its request are the next request, not a tunnel.
            self.tunnel_pending = b""
            self.data_received(pending)
        if self.paused and not self.closed:
            self.resume_reading()

    def _reject(self, status: int, error: str) -> None:
        """A request that cannot be parsed or violates a limit: answer and close."""
        if self.current is not None and not self.current.done:
            if self.current.sent_any:
                self._close(abort=True)
                return
            self.current.abandon()
            self.current = None
        self.keep_alive = False
        self._reply_error(status, error, b"-", close=True)

    def _reply_error(
        self,
        status: int,
        error: str,
        request_id: bytes,
        *,
        route: str | None = None,
        kind: str | None = None,
        close: bool = False,
    ) -> None:
        if close:
            self.keep_alive = False
        self._write(
            error_response(
                status,
                error,
                request_id=request_id,
                route=route,
                kind=kind,
                close=not self.keep_alive,
            )
        )
        self.plane.record_local(status, error, kind, self.peer, request_id)
        if not self.keep_alive:
            self._close(abort=False)
        else:
            self._set_deadline("idle", self.plane.idle_timeout)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        self._pause()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def _close(self, *, abort: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the current response."""
        self.keep_alive = False
        if self.current is None:
            self._close(abort=False)

    # ---- deadlines (the timer mechanics are in strangler.deadlines) -------------------------
    def _deadline_passed(self, kind: str) -> None:
        if kind == "header" and self.current is None:
            self._reject(408, "request_timeout")
        elif kind == "body":
            self.plane.count_timeout("body")
            self._reject(408, "request_timeout")
        elif kind == "idle":
            self._close(abort=False)
        else:
            self.deadline = 0.0

    def _rearm_horizon(self) -> float:
        return self.plane.header_timeout


class _Reject(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
