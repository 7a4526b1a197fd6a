"""Header handling for both directions of the proxy (pure: bytes in, bytes out).

Invariants:
- hop-by-hop headers (RFC 9110 7.6.1: Connection and every header it names, Keep-Alive,
  Proxy-Connection, Proxy-Authorization, TE, Trailer, Transfer-Encoding, Upgrade) never cross the
  proxy; the proxy writes its own framing (Content-Length or chunked) and, for a WebSocket upgrade
  only, its own Upgrade and Connection;
- header names with an underscore are dropped (as nginx does by default), so `X_Forwarded_For`
  cannot become `X-Forwarded-For` in a backend that folds `_` and `-` together;
- client-sent internal control headers (`x-strangler-*`, and a canary route's override header
  once read) are never forwarded, and the forwarding headers are the proxy's own unless trusted;
- the proxy adds nothing else to the upstream request: no Accept-Encoding, no User-Agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "FORWARDING",
    "HOP_BY_HOP",
    "MEMO_NAMES",
    "RESPONSE_DROPPED",
    "connection_tokens",
    "is_valid_request_id",
    "render_request_head",
    "render_response_head",
]

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",  # framing is re-written by the proxy
        b"host",  # replaced by the upstream's authority
        b"expect",  # the proxy answers 100-continue itself
    }
)
FORWARDING: Final = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip"}
)
RESPONSE_DROPPED: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)
_INTERNAL_PREFIX: Final = b"x-strangler-"
_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

STATUS_REASONS: Final[dict[int, bytes]] = {
    100: b"Continue",
    101: b"Switching Protocols",
    200: b"OK",
    204: b"No Content",
    304: b"Not Modified",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


_STATUS_LINES: Final = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, reason) for status, reason in STATUS_REASONS.items()
}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>` and CRLF (the reason empty for a status without one here)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, STATUS_REASONS.get(status, b""))
    return line


def connection_tokens(values: Iterable[bytes]) -> frozenset[bytes]:
    """The lower-cased header names listed in Connection header values."""
    tokens: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    return frozenset(tokens)


def is_valid_request_id(value: bytes) -> bool:
    return _REQUEST_ID.fullmatch(value) is not None


def render_request_head(
    method: bytes,
    target: bytes,
    host: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    extra: Iterable[tuple[bytes, bytes]],
    framing: bytes,
) -> bytes:
    """Serialise an upstream request head; `headers` must already be filtered."""
    parts = [method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    for name, value in extra:
        parts += (name, b": ", value, b"\r\n")
    parts += (framing, b"\r\n")
    return b"".join(parts)


def render_response_head(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    framing: bytes,
    reason: bytes | None = None,
) -> bytes:
    """Serialise a response head for the client; `framing` ends with CRLF or is empty."""
    parts = [status_line(status) if reason is None else b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts += (framing, b"\r\n")
    return b"".join(parts)


def without_cookie(headers: list[tuple[bytes, bytes]], name: bytes) -> list[tuple[bytes, bytes]]:
    """`headers` with the cookie `name` taken out of every Cookie header (emptied ones dropped).

    Used for the canary override cookie, whose value may carry the testers' shared secret: it is
    read at the edge and must not reach the upstream.
    """
    out: list[tuple[bytes, bytes]] = []
    prefix = name + b"="
    for header, value in headers:
        if header == b"cookie" and prefix in value:
            parts = [p for p in value.split(b";") if not p.strip().startswith(prefix)]
            value = b";".join(parts).strip()
            if not value:
                continue
        out.append((header, value))
    return out


# ---- one-pass scans for the hot path ----------------------------------------------------------
# The request scan sorts each header once: the few the proxy acts on are collected, the rest kept
# or dropped by one set lookup, so a request costs one loop over its headers.
_REQUEST_SPECIAL: Final = {
    b"host": 0,
    b"content-length": 1,
    b"transfer-encoding": 2,
    b"connection": 3,
    b"expect": 4,
    b"upgrade": 5,
}
_STANDARD_CONNECTION_TOKENS: Final = frozenset({b"keep-alive", b"close", b"upgrade"})


def request_drop_set(*, trust_forwarded: bool) -> frozenset[bytes]:
    """Header names a request never forwards (besides Connection-listed and underscore names)."""
    drop = HOP_BY_HOP | {b"x-forwarded-for"}
    if not trust_forwarded:
        drop |= FORWARDING
    return frozenset(drop)


_NONE: Final[list[bytes]] = []  # the shared "none seen" value of RequestScan's lists: never mutated


class RequestScan:
    """What one pass over a request's headers found (see `scan_request`).

    The lists start as one shared empty list that is never appended to (a header seen replaces
    it with a new list): a scan costs one small object and the lists a request actually has.
    """

    __slots__ = (
        "connection",
        "expect",
        "hosts",
        "kept",
        "lengths",
        "request_id",
        "te",
        "upgrade",
    )

    def __init__(self, kept: list[tuple[bytes, bytes]]) -> None:
        none = _NONE
        self.kept = kept
        self.hosts = none
        self.lengths = none
        self.te = none
        self.connection = none
        self.expect: bytes | None = None
        self.upgrade: bytes | None = None
        self.request_id: bytes | None = None


def _lists_names(connection: list[bytes]) -> bool:
    """Whether Connection values may name headers (anything but one standard token)."""
    if len(connection) > 1:
        return True
    value = connection[0]
    if value == b"keep-alive" or value == b"close":
        return False  # the usual spellings, without strip() and lower()
    return value.strip().lower() not in _STANDARD_CONNECTION_TOKENS


def scan_request(
    raw: list[tuple[bytes, bytes]], drop: frozenset[bytes], request_id_name: bytes
) -> RequestScan:
    """One pass over lower-cased request headers: the kept end-to-end ones and the special ones.

    Hop-by-hop, forwarding (per `drop`), underscore and `x-strangler-*` names are not kept, nor
    the request id header (the proxy sends its own), nor (second pass, only when present) names
    listed in Connection.
    """
    kept: list[tuple[bytes, bytes]] = []
    scan = RequestScan(kept)
    special = _REQUEST_SPECIAL
    for item in raw:
        name = item[0]
        kind = special.get(name)
        if kind is not None:
            if kind == 0:
                scan.hosts = [*scan.hosts, item[1]]
            elif kind == 1:
                scan.lengths = [*scan.lengths, item[1]]
            elif kind == 2:
                scan.te = [*scan.te, item[1]]
            elif kind == 3:
                scan.connection = [*scan.connection, item[1]]
            elif kind == 4:
                scan.expect = item[1]
            else:
                scan.upgrade = item[1]
            continue
        if name == request_id_name:
            if scan.request_id is None and is_valid_request_id(item[1]):
                scan.request_id = item[1]
            continue
        # 0x5F is "_": an int operand (a bytes one makes CPython raise and clear a TypeError)
        if name in drop or 0x5F in name or name.startswith(_INTERNAL_PREFIX):
            continue
        kept.append(item)
    connection = scan.connection
    if connection and _lists_names(connection):
        listed = connection_tokens(connection) - _STANDARD_CONNECTION_TOKENS
        if listed:
            scan.kept = [item for item in kept if item[0] not in listed]
    return scan


_RESPONSE_SPECIAL: Final = {
    b"content-length": 0,
    b"transfer-encoding": 1,
    b"connection": 2,
    b"x-request-id": 3,
}
_KEEP: Final = -1
_DROP: Final = 4
# Kind of a lower-cased response header name: special (0-3), dropped hop-by-hop (4); others kept.
_RESPONSE_KIND_LOWER: Final = {
    **{name: _DROP for name in RESPONSE_DROPPED},
    **_RESPONSE_SPECIAL,
}


def _spellings(name: bytes) -> tuple[bytes, ...]:
    title = b"-".join(part.capitalize() for part in name.split(b"-"))
    return (name, title, name.upper())


# The same kinds for the usual spellings of common names, so most headers need no `lower()`.
_RESPONSE_KIND_FAST: Final[dict[bytes, int]] = {
    spelling: _RESPONSE_KIND_LOWER.get(name, _KEEP)
    for name in (
        *_RESPONSE_KIND_LOWER,
        b"server",
        b"date",
        b"content-type",
        b"cache-control",
        b"etag",
        b"last-modified",
        b"vary",
        b"set-cookie",
        b"location",
        b"expires",
        b"accept-ranges",
        b"content-encoding",
        b"content-language",
        b"access-control-allow-origin",
        b"strict-transport-security",
        b"x-content-type-options",
        b"x-frame-options",
        b"age",
        b"pragma",
    )
    for spelling in _spellings(name)
}
_RESPONSE_KIND_FAST[b"ETag"] = _KEEP


def _response_kind(name: bytes) -> int:
    kind = _RESPONSE_KIND_FAST.get(name)
    return _RESPONSE_KIND_LOWER.get(name.lower(), _KEEP) if kind is None else kind


class HeaderKinds:
    """The response headers one upstream sent last, in order: names, kinds, values and the
    rendered lines of the kept ones.

    An upstream sends its header names in the same order response after response, most with
    the same values: comparing a name (and value) with the one in the same place last time
    costs a fraction of hashing it for a lookup (and of rendering its line). A memo of pure
    functions (exact bytes, at most `MEMO_NAMES` places): never a different answer, only a
    cheaper one."""

    __slots__ = ("kinds", "lines", "names", "values")

    def __init__(self) -> None:
        self.names: list[bytes] = []
        self.kinds: list[int] = []
        self.values: list[bytes] = []
        self.lines: list[bytes] = []  # b"name: value\r\n" of a kept header, else b""


# Header names remembered by place, per upstream (HeaderKinds) and per client connection
# (strangler.server): at most this many.
MEMO_NAMES: Final = 32


def scan_response(
    status: int, raw: list[tuple[bytes, bytes]], memo: HeaderKinds | None = None
) -> tuple[list[bytes], bytes | None, bool]:
    """One pass over an upstream response's headers that also renders the client's response head.

    Returns the head's parts so far (the status line and the kept headers' lines, names as
    sent, each ending in CRLF: the caller adds its own headers, the framing and the final CRLF,
    then joins), the first Content-Length, and whether Transfer-Encoding was present. Hop-by-hop
    headers, names listed in Connection and the upstream's X-Request-ID (the proxy returns its
    own) are not kept. `memo` remembers the upstream's last headers (`HeaderKinds`)."""
    parts = [status_line(status)]
    length: bytes | None = None
    chunked = False
    connection: list[bytes] | None = None
    if memo is None:
        memo = HeaderKinds()  # a throwaway: the same code path, nothing remembered
    names = memo.names
    kinds = memo.kinds
    values = memo.values
    lines = memo.lines
    known = len(names)
    for index, item in enumerate(raw):
        name = item[0]
        value = item[1]
        if index < known and names[index] == name:
            kind = kinds[index]
            if kind == _KEEP:
                if values[index] != value:
                    values[index] = value
                    lines[index] = b"%s: %s\r\n" % (name, value)
                parts.append(lines[index])
                continue
        else:
            kind = _response_kind(name)
            line = b"%s: %s\r\n" % (name, value) if kind == _KEEP else b""
            if index < known:
                names[index] = name
                kinds[index] = kind
                values[index] = value
                lines[index] = line
            elif index < MEMO_NAMES:
                names.append(name)
                kinds.append(kind)
                values.append(value)
                lines.append(line)
                known += 1
            if kind == _KEEP:
                parts.append(line)
                continue
        if kind == 0:
            if length is None:
                length = value
        elif kind == 1:
            chunked = True
        elif kind == 2:
            connection = [value] if connection is None else [*connection, value]
    if connection is not None and _lists_names(connection):
        listed = connection_tokens(connection) - _STANDARD_CONNECTION_TOKENS
        if listed:
            # Rare: render again without the listed names.
            parts = [status_line(status)]
            for name, value in raw:
                if _response_kind(name) == _KEEP and name.lower() not in listed:
                    parts.append(b"%s: %s\r\n" % (name, value))
    return parts, length, chunked
