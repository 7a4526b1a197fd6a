"""The client half of the data plane: one asyncio Protocol per client connection, parsed by
httptools.

A `ClientConnection` parses requests, enforces the edge limits and timeouts, routes each request on
the runtime snapshot current when its head completed, hands it to an `Exchange`, and writes the
response back with the proxy's own framing.

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
import re
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from strangler import headers as hdr
from strangler.errors import error_response
from strangler.exchange import Exchange
from strangler.pathnorm import UnsafeTarget, normalize_target
from strangler.request import RequestHead

if TYPE_CHECKING:
    from strangler.runtime import DataPlane, RouteRuntime
    from strangler.upstream import UpstreamConnection

__all__ = ["ClientConnection", "RequestHead"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CHUNK_END = b"0\r\n\r\n"
_NO_BODY_STATUS = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_BAD_HOST = re.compile(r"[ /\\@?#]")


_Head = tuple[bytes, bytes, list[tuple[bytes, bytes]], str, bool, bool]


class _Incoming:
    """A request parsed while an earlier one is still being answered (pipelining)."""

    __slots__ = ("body", "complete", "head")

    def __init__(self, head: _Head) -> None:
        self.head = head
        self.body: list[bytes] = []
        self.complete = False


class ClientConnection(asyncio.Protocol):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.loop = plane.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = "-"
        self.peer_b = b"-"
        self.closed = False
        self.current: Exchange | None = None
        self.queue: deque[_Incoming] = deque()
        self.incoming: _Incoming | None = None
        self.url = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.header_bytes = 0
        self.in_head = False
        self.paused = False
        self.write_paused = False
        self.keep_alive = True
        self.deadline = 0.0
        self.deadline_kind = "idle"
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0
        self.body_limit = 0
        self.body_seen = 0
        self.chunked_response = False
        self.out: list[bytes] = []  # response bytes of the current upstream read (flush_out)
        self.upgrading = False  # a WebSocket upgrade is waiting for the upstream's answer
        self.tunnel_conn: UpstreamConnection | None = None
        self.ex_owner: Exchange | None = None
        self.ex_deadline = 0.0
        self.ex_callback: Callable[[], None] | None = None
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
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._set_deadline("idle", self.plane.limits.header_timeout)

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
        if self.deadline_kind == "idle":
            self._set_deadline("header", self.plane.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.plane.limits.max_request_line:
            raise _Reject(414, "uri_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a chunked body's trailers: dropped, never headers of a queued request
        raw = self.raw_headers
        limits = self.plane.limits
        if len(raw) >= limits.max_headers:
            raise _Reject(431, "too_many_headers")
        # Control bytes in values (all but HTAB) are refused by llhttp itself, with a 400.
        # data_received only sees the head size once a message began: a whole oversized head
        # arriving in one read is caught here.
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > limits.max_header_bytes:
            raise _Reject(431, "headers_too_large")
        raw.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        parser = self.parser
        if self.current is not None or self.queue:
            self.incoming = _Incoming(
                (
                    parser.get_method(),
                    self.url,
                    self.raw_headers,
                    parser.get_http_version(),
                    parser.should_keep_alive(),
                    parser.should_upgrade(),
                )
            )
            self.queue.append(self.incoming)
            return
        self.incoming = None
        self._dispatch(
            parser.get_method(),
            self.url,
            self.raw_headers,
            parser.get_http_version(),
            parser.should_keep_alive(),
            parser.should_upgrade(),
        )

    def on_body(self, body: bytes) -> None:
        self.body_seen += len(body)
        if self.incoming is not None:
            self.incoming.body.append(body)
            return
        if self.body_seen > self.body_limit:
            raise _Reject(413, "body_too_large")
        self._set_deadline("body", self.plane.limits.body_timeout)
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

    # ---- dispatch -----------------------------------------------------------------------
    def _dispatch(
        self,
        method_b: bytes,
        url: bytes,
        raw: list[tuple[bytes, bytes]],
        version: str,
        keep_alive: bool,
        upgrade: bool,
    ) -> None:
        self.keep_alive = bool(keep_alive)
        self.deadline_kind = "response"
        self.deadline = 0.0
        plane = self.plane
        scan = hdr.scan_request(raw, plane.request_drop, plane.request_id_header)
        request_id = scan.request_id or plane.new_request_id()
        method = method_b.decode("ascii")
        if version != "1.1" and version != "1.0":
            # llhttp takes "GET /" as HTTP/0.9: never forward a request the client did not frame.
            self._reply_error(400, "bad_request", request_id, kind="version", close=True)
            return
        if method == "CONNECT":
            self._reply_error(405, "method_not_allowed", request_id, close=True)
            return
        try:
            target = normalize_target(url)
        except UnsafeTarget as exc:
            self._reply_error(400, "bad_request", request_id, kind=exc.reason, close=True)
            return
        body_kind: str
        length: int | None
        if scan.te or scan.lengths:
            framing = self._framing(scan, version)
            if framing is None:
                return
            body_kind, length = framing
        else:
            body_kind, length = "none", None
        hosts = scan.hosts
        if target.authority is None and len(hosts) == 1 and hosts[0] == self.last_host_raw:
            host: str | bool | None = self.last_host  # the connection's usual Host, checked
        else:
            host = self._host(hosts, target.authority)
            if isinstance(host, str) and target.authority is None:
                self.last_host_raw, self.last_host = hosts[0], host
        if host is False:
            self._reply_error(400, "bad_request", request_id, kind="host", close=True)
            return
        if body_kind == "chunked":
            out_framing = b"transfer-encoding: chunked\r\n"
        elif length:
            out_framing = b"content-length: " + str(length).encode() + b"\r\n"
        elif method in _BODY_METHODS:
            out_framing = b"content-length: 0\r\n"
        else:
            out_framing = b""
        query = (target.query or b"?") if target.has_query else b""
        req = RequestHead(
            method_b,
            method,
            target.path,
            query,
            host if isinstance(host, str) else None,
            raw,
            scan.kept,
            plane.forwarding_headers(raw, host, self.peer_b, request_id),
            out_framing,
        )
        match = plane.snapshot.table.match(req)
        entry = match.entry
        if entry is None:
            status, error = (
                (405, "method_not_allowed") if match.method_mismatch else (404, "no_route")
            )
            self._reply_error(status, error, request_id)
            return
        route: RouteRuntime = entry.payload
        self.body_limit = route.max_body_bytes
        self.body_seen = 0
        if length is not None and length > route.max_body_bytes:
            self._reply_error(413, "body_too_large", request_id, route=route.name, close=True)
            return
        websocket = (
            bool(upgrade)
            and scan.upgrade is not None
            and (scan.upgrade.strip().lower() == b"websocket")
        )
        # route.choose(req, self), without the call for an unsplit route (most of them)
        upstream, extra_response = (
            route.primary_choice if route.split is None else route.choose(req, self)
        )
        if route.internal_headers:
            # A canary override header stays at the edge.
            req.headers = [item for item in req.headers if item[0] not in route.internal_headers]
        if route.override_cookie is not None:
            req.headers = hdr.without_cookie(req.headers, route.override_cookie)
        if websocket:
            req.extra += b"connection: upgrade\r\nupgrade: websocket\r\n"
        elif upgrade:
            self.keep_alive = False  # a refused upgrade leaves the parser in tunnel mode
        if route.rewrites:
            req.rewritten = route.rewrite(target.path, match.prefix)
        exchange = Exchange(
            self,
            route,
            upstream,
            method,
            req,
            request_id,
            has_body=body_kind != "none",
            chunked=body_kind == "chunked",
            response_extra=extra_response,
            upgrade=websocket,
        )
        self.current = exchange
        if route.shadow is not None and not websocket:
            exchange.shadow = route.shadow.begin(exchange, req, length, raw)
        if (
            scan.expect is not None
            and version == "1.1"
            and scan.expect.strip().lower() == b"100-continue"
        ):
            self._write(_CONTINUE)
        if body_kind == "none" and exchange.shadow is not None:
            exchange.shadow.on_request_complete()
        exchange.begin()

    def _framing(self, scan: hdr.RequestScan, version: object) -> tuple[str, int | None] | None:
        te = scan.te
        cl = scan.lengths
        rid = b"-"
        if te:
            if cl or version != "1.1":
                self._reply_error(400, "bad_request", rid, kind="framing", close=True)
                return None
            if len(te) != 1 or te[0].strip().lower() != b"chunked":
                self._reply_error(501, "not_implemented", rid, kind="transfer_encoding", close=True)
                return None
            return "chunked", None
        if cl:
            if len(cl) != 1 or not cl[0].isdigit() or len(cl[0]) > 18:
                self._reply_error(400, "bad_request", rid, kind="content_length", close=True)
                return None
            length = int(cl[0])
            return ("length" if length else "none"), length
        return "none", None

    def _host(self, hosts: list[bytes], authority: str | None) -> str | bool | None:
        if len(hosts) > 1:
            return False
        if authority is not None:
            return authority
        if not hosts:
            return None
        value = hosts[0].decode("latin-1")
        if not value or not value.isprintable() or _BAD_HOST.search(value) is not None:
            return False
        return value

    # ---- response writing (called by the exchange) --------------------------------------
    def send_response_head(self, ex: Exchange, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        # The scan renders the kept upstream headers as it classifies them: one pass.
        parts, length, chunked = hdr.scan_response(status, raw)
        parts += (b"x-request-id: ", ex.request_id, b"\r\n")
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
        elif self.keep_alive and self.parser.get_http_version() == "1.1":
            framing = b"transfer-encoding: chunked\r\n"
            self.chunked_response = True
        else:
            self.keep_alive = False
        if not self.keep_alive and status != 101:
            framing += b"connection: close\r\n"
        ex.sent_any = True
        parts += (framing, b"\r\n")
        self.out.append(b"".join(parts))

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
        self.plane.record(ex, self.peer)
        self._next(ex)

    def abort_response(self, ex: Exchange) -> None:
        self.out.clear()
        self.plane.record(ex, self.peer, status_override=ex.status or 502)
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
        self.plane.record(ex, self.peer, error=kind or error)
        self._next(ex)

    def start_tunnel(self, ex: Exchange, conn: UpstreamConnection, rest: bytes) -> None:
        self.flush_out()  # the 101 head
        self.plane.record(ex, self.peer)
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
        self._set_deadline("idle", self.plane.limits.idle_timeout)
        while self.queue and self.current is None and not self.closed:
            item = self.queue.popleft()
            self._dispatch(*item.head)
            current = cast("Exchange | None", self.current)  # _dispatch may have set it
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
            self._set_deadline("idle", self.plane.limits.idle_timeout)

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

    # ---- timers -------------------------------------------------------------------------
    def _set_deadline(self, kind: str, delay: float) -> None:
        self.deadline_kind = kind
        if delay <= 0:
            self.deadline = 0.0
            return
        self.deadline = when = self.loop.time() + delay
        if self.timer is None or self.timer_when > when:
            self._arm_timer(when)

    def arm_exchange(self, owner: Exchange, when: float, callback: Callable[[], None]) -> None:
        """The current exchange's deadline (response or bulkhead wait), on the connection's timer.

        One timer handle per connection serves every deadline: it is moved only when a deadline
        comes earlier than it, so steady keep-alive traffic creates no handle per request.
        """
        self.ex_owner = owner
        self.ex_deadline = when
        self.ex_callback = callback
        if self.timer is None or self.timer_when > when:
            self._arm_timer(when)

    def disarm_exchange(self, owner: Exchange) -> None:
        if self.ex_owner is owner:
            self.ex_owner = None
            self.ex_deadline = 0.0
            self.ex_callback = None

    def _arm_timer(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._on_timer)
        self.timer_when = when  # the handle's when(), without a call per request

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        callback = self.ex_callback
        if callback is not None and now >= self.ex_deadline:
            self.ex_owner = None
            self.ex_deadline = 0.0
            self.ex_callback = None
            callback()
            if self._gone():
                return
        if self.deadline and now >= self.deadline:
            if self.deadline_kind == "header" and self.current is None:
                self._reject(408, "request_timeout")
            elif self.deadline_kind == "body":
                self.plane.count_timeout("body")
                self._reject(408, "request_timeout")
            elif self.deadline_kind == "idle":
                self._close(abort=False)
            else:
                self.deadline = 0.0
            if self._gone():
                return
        pending = [d for d in (self.deadline, self.ex_deadline) if d]
        if pending:
            # No later than one header timeout ahead, so the next request's header deadline
            # does not have to move the handle.
            self._arm_timer(min(min(pending), now + self.plane.limits.header_timeout))

    def _gone(self) -> bool:
        """Whether the connection closed (a callback may have closed it; mypy cannot tell)."""
        return self.closed

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Reject(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
