"""Hostile request-targets: no spelling carries a request out of a routed prefix.

The orders route owns `/api/orders` (extracted service); everything else goes to the monolith. For
every spelling of a dot segment or an encoded separator, the proxy either answers 400 itself (no
upstream contacted) or normalises the path, and then the upstream that received it is the one its
received path implies: the orders service only ever sees paths under `/api/orders`, and no upstream
sees a dot segment or an encoded separator that it could decode into one. Absolute-form targets are
routed by path; `CONNECT`, asterisk-form and fragments are answered by the proxy (docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.adversarial.wire import Client, RecordingUpstream, config, exchange, split_responses
from tests.harness import ProxyHandle

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]

REJECTED = "400"
# (id, target, expected): expected is "400", or "<upstream> <path the upstream receives>".
TARGETS: list[tuple[str, bytes, str]] = [
    ("dotdot", b"/api/orders/../admin", "legacy /api/admin"),
    ("dotdot_end", b"/api/orders/..", "legacy /api/"),
    ("dot", b"/api/orders/./7", "orders /api/orders/7"),
    ("dotdot_lower", b"/api/orders/%2e%2e/admin", "legacy /api/admin"),
    ("dotdot_upper", b"/api/orders/%2E%2E/admin", "legacy /api/admin"),
    ("dotdot_mixed_first", b"/api/orders/%2E./admin", "legacy /api/admin"),
    ("dotdot_mixed_second", b"/api/orders/.%2e/admin", "legacy /api/admin"),
    ("dotdot_twice_escapes", b"/api/orders/../../../etc/passwd", REJECTED),
    ("dotdot_from_root", b"/../api/orders/7", REJECTED),
    ("dotdot_into_orders", b"/api/other/../orders/7", "orders /api/orders/7"),
    ("empty_segments", b"/api//orders//../admin", "legacy /api/admin"),
    ("encoded_slash", b"/api/orders%2F..%2Fadmin", REJECTED),
    ("encoded_slash_lower", b"/api/orders/..%2fadmin", REJECTED),
    ("encoded_backslash", b"/api/orders/..%5Cadmin", REJECTED),
    ("encoded_backslash_lower", b"/api/orders/..%5cadmin", REJECTED),
    ("backslash", b"/api/orders\\..\\admin", REJECTED),
    ("backslash_segment", b"/api/orders/..\\admin", REJECTED),
    ("semicolon_dotdot", b"/api/orders/..;/admin", REJECTED),
    ("semicolon_dotdot_param", b"/api/orders/..;jsessionid=1/admin", REJECTED),
    ("semicolon_dot", b"/api/orders/.;/admin", REJECTED),
    ("semicolon_encoded_dotdot", b"/api/orders/%2e%2e;/admin", REJECTED),
    ("semicolon_on_prefix", b"/api/orders;x=1/7", "legacy /api/orders;x=1/7"),
    ("double_encoded_dotdot", b"/api/orders/%252e%252e/admin", REJECTED),
    ("double_encoded_slash", b"/api/orders/..%252fadmin", REJECTED),
    ("double_encoded_backslash", b"/api/orders/..%255cadmin", REJECTED),
    ("triple_spelled_percent", b"/api/orders/%25%32%65%25%32%65/admin", REJECTED),
    ("overlong_utf8_dot", b"/api/orders/%c0%ae%c0%ae/admin", REJECTED),
    ("overlong_utf8_dot_3byte", b"/api/orders/%e0%80%ae%e0%80%ae/admin", REJECTED),
    ("overlong_utf8_slash", b"/api/orders/..%c0%afadmin", REJECTED),
    ("iis_unicode_escape", b"/api/orders/%u002e%u002e/admin", REJECTED),
    ("bad_percent", b"/api/orders/%zz", REJECTED),
    ("truncated_percent", b"/api/orders/%2", REJECTED),
    ("encoded_nul", b"/api/orders/%00/admin", REJECTED),
    ("encoded_newline", b"/api/orders/%0d%0aX-Injected:%201", REJECTED),
    ("encoded_unreserved", b"/api/%6Frders/7", "orders /api/orders/7"),
    ("prefix_lookalike", b"/api/ordersX/7", "legacy /api/ordersX/7"),
    ("prefix_case", b"/API/orders/7", "legacy /API/orders/7"),
    ("three_dots", b"/api/orders/.../7", "orders /api/orders/.../7"),
    ("query_with_dotdot", b"/api/orders/7?x=/../admin", "orders /api/orders/7?x=/../admin"),
    ("query_with_encoded_slash", b"/api/orders/7?p=%2F..%2F", "orders /api/orders/7?p=%2F..%2F"),
    ("fragment", b"/api/orders/7#/../admin", REJECTED),
    ("asterisk", b"*", REJECTED),
    ("relative", b"api/orders/7", REJECTED),
    ("absolute_form", b"http://evil.example/api/orders/7", "orders /api/orders/7"),
    ("absolute_form_dotdot", b"http://evil.example/api/orders/../admin", "legacy /api/admin"),
    ("absolute_form_userinfo", b"http://user@evil.example/api/orders/7", REJECTED),
    ("absolute_form_other_scheme", b"ftp://evil.example/api/orders/7", REJECTED),
    ("authority_form", b"evil.example:443", REJECTED),
]


@pytest.mark.parametrize(
    ("target", "expected"), [c[1:] for c in TARGETS], ids=[c[0] for c in TARGETS]
)
async def test_no_spelling_escapes_its_route(
    proxy_factory: ProxyFactory,
    upstream: RecordingUpstream,
    orders: RecordingUpstream,
    target: bytes,
    expected: str,
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, orders=orders.port))
    request = b"GET " + target + b" HTTP/1.1\r\nHost: shop.example\r\n\r\n"
    client = await Client.open(proxy.port)
    await client.send(request)
    (resp,) = await client.read_responses(1)
    client.close()
    await asyncio.sleep(0.02)
    received = {
        name: [r.target for r in up.requests]
        for name, up in (("legacy", upstream), ("orders", orders))
    }
    if expected == REJECTED:
        assert resp.status == 400
        assert upstream.received == b"" and orders.received == b""
        return
    assert resp.status == 200
    name, path = expected.split(" ")
    assert received == {"legacy": [], "orders": [], name: [path]}
    # The invariant behind every row: the route the received path implies is the route taken.
    routed_path = path.partition("?")[0]
    implied = (
        "orders"
        if routed_path == "/api/orders" or routed_path.startswith("/api/orders/")
        else "legacy"
    )
    assert implied == name
    lowered = routed_path.lower()
    for bad in ("/../", "/./", "%2e", "%2f", "%5c", "\\", "%25"):
        assert bad not in lowered + "/"


async def test_absolute_form_authority_never_becomes_the_upstream_host(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, orders: RecordingUpstream
) -> None:
    """Absolute-form is routed by path; the upstream's Host is always its own."""
    proxy = await proxy_factory(config(legacy=upstream.port, orders=orders.port))
    request = b"GET http://evil.example:666/api/orders/7 HTTP/1.1\r\nHost: shop.example\r\n\r\n"
    client = await Client.open(proxy.port)
    await client.send(request)
    (resp,) = await client.read_responses(1)
    client.close()
    assert resp.status == 200
    (req,) = orders.requests
    assert req.target == "/api/orders/7"
    assert req.header("host") == f"127.0.0.1:{orders.port}"
    # As RFC 9112 3.2.2 asks, the authority replaces Host: the client could have sent that Host.
    assert req.header("x-forwarded-host") == "evil.example:666"
    assert b"shop.example" not in orders.received


FOREIGN_FORMS: list[tuple[str, bytes, set[int]]] = [
    ("connect", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", {405}),
    (
        "connect_with_tunnel_bytes",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\nSSH-2.0-OpenSSH\r\n",
        {405},
    ),
    ("options_asterisk", b"OPTIONS * HTTP/1.1\r\nHost: shop.example\r\n\r\n", {400}),
    ("get_asterisk", b"GET * HTTP/1.1\r\nHost: shop.example\r\n\r\n", {400}),
    ("trace", b"TRACE /api/orders HTTP/1.1\r\nHost: shop.example\r\n\r\n", {200, 405}),
]


@pytest.mark.parametrize(
    ("request_bytes", "statuses"), [c[1:] for c in FOREIGN_FORMS], ids=[c[0] for c in FOREIGN_FORMS]
)
async def test_connect_and_asterisk_answered_by_the_proxy(
    proxy_factory: ProxyFactory,
    upstream: RecordingUpstream,
    orders: RecordingUpstream,
    request_bytes: bytes,
    statuses: set[int],
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port, orders=orders.port))
    raw, closed = await exchange(proxy.port, request_bytes, wait=1.0)
    responses, trailing = split_responses(raw)
    assert responses and responses[0].status in statuses
    if responses[0].status != 200:
        assert closed and not trailing and len(responses) == 1
        await asyncio.sleep(0.02)
        assert upstream.received == b"" and orders.received == b""
