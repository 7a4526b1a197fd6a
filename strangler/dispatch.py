"""From a parsed request head to a running `Exchange`: validation, routing, the upstream head.

`dispatch_request` runs for each request a `ClientConnection` parsed (`self` is the connection).
It checks the request line and framing, normalises the target, validates Host, routes on the
current snapshot, builds the `RequestHead` the upstream will receive, and starts the exchange
(and its shadow copy). Every refusal is a small JSON error that never echoes the request.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from strangler import headers as hdr
from strangler.exchange import Exchange
from strangler.pathnorm import UnsafeTarget, normalize_target
from strangler.request import RequestHead

if TYPE_CHECKING:
    from strangler.runtime import RouteRuntime
    from strangler.server import ClientConnection

__all__ = ["dispatch_request"]

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_BAD_HOST: Final = re.compile(r"[ /\\@?#]")


def dispatch_request(
    self: ClientConnection,
    method_b: bytes,
    url: bytes,
    raw: list[tuple[bytes, bytes]],
    version: str,
    keep_alive: bool,
    upgrade: bool,
) -> None:
    self.keep_alive = bool(keep_alive)
    self.version = version
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
        framing = _framing(self, scan, version)
        if framing is None:
            return
        body_kind, length = framing
    else:
        body_kind, length = "none", None
    hosts = scan.hosts
    if target.authority is None and len(hosts) == 1 and hosts[0] == self.last_host_raw:
        host: str | bool | None = self.last_host  # the connection's usual Host, checked
    else:
        host = _host(hosts, target.authority)
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
        status, error = (405, "method_not_allowed") if match.method_mismatch else (404, "no_route")
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


def _framing(
    self: ClientConnection, scan: hdr.RequestScan, version: object
) -> tuple[str, int | None] | None:
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


def _host(hosts: list[bytes], authority: str | None) -> str | bool | None:
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
