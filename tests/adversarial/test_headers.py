"""Hostile headers: what a client sends never controls the proxy or reaches the upstream unchecked.

Hop-by-hop headers and the headers a Connection header names stay at the edge (but a client cannot
use Connection to strip the forwarding headers the proxy adds itself); underscore names are
dropped; untrusted forwarding headers are replaced by the proxy's own; client-sent internal control
headers (`X-Strangler-*`) are dropped and, except for the documented shadow loop guard, have no
effect (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from strangler.split import WeightedSplit, bucket_of
from tests.adversarial.wire import MARKER, Client, RecordingUpstream, UpRequest, config
from tests.harness import ProxyHandle

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]


async def one_request(proxy: ProxyHandle, head: bytes) -> tuple[int, list[tuple[str, str]]]:
    client = await Client.open(proxy.port)
    await client.send(head)
    (resp,) = await client.read_responses(1)
    client.close()
    return resp.status, resp.headers


def all_values(req: UpRequest) -> str:
    return "\n".join(f"{n.lower()}: {v}" for n, v in req.headers)


DROPPED: list[tuple[str, bytes, list[str]]] = [
    (
        "hop_by_hop",
        b"Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n"
        b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic " + MARKER.encode() + b"\r\n"
        b"Upgrade: h2c\r\n",
        ["keep-alive", "te", "trailer", "proxy-connection", "proxy-authorization", "upgrade"],
    ),
    (
        "connection_listed",
        b"Connection: keep-alive, X-Secret-Hop,  x-other-hop \r\n"
        b"X-Secret-Hop: " + MARKER.encode() + b"\r\nX-Other-Hop: 1\r\n",
        ["connection", "x-secret-hop", "x-other-hop"],
    ),
    (
        "underscore_names",
        b"X_Forwarded_For: 6.6.6.6\r\nX_Strangler_Shadow: 1\r\n"
        b"Content_Length: 5\r\nX_Real_IP: 6.6.6.6\r\nMy_Header: " + MARKER.encode() + b"\r\n",
        ["x_forwarded_for", "x_strangler_shadow", "content_length", "x_real_ip", "my_header"],
    ),
    (
        "forwarding_untrusted",
        b"X-Forwarded-For: 6.6.6.6\r\nx-FORWARDED-proto: https\r\n"
        b"X-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6;host=evil.example\r\n"
        b"X-Real-IP: 6.6.6.6\r\n",
        ["forwarded", "x-real-ip"],
    ),
    (
        "internal_control",
        b"X-Strangler-Shadow: 1\r\nX-Strangler-Fallback: breaker_open\r\n"
        b"X-Strangler-Upstream: orders\r\nX-Strangler-Anything: " + MARKER.encode() + b"\r\n",
        [
            "x-strangler-shadow",
            "x-strangler-fallback",
            "x-strangler-upstream",
            "x-strangler-anything",
        ],
    ),
]


@pytest.mark.parametrize(
    ("headers", "absent"), [c[1:] for c in DROPPED], ids=[c[0] for c in DROPPED]
)
async def test_edge_headers_never_reach_the_upstream(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, headers: bytes, absent: list[str]
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    status, _ = await one_request(
        proxy, b"GET /p HTTP/1.1\r\nHost: shop.example\r\n" + headers + b"\r\n"
    )
    assert status == 200
    (req,) = upstream.requests
    for name in absent:
        assert name not in req.names
    assert MARKER.encode() not in upstream.received
    assert b"6.6.6.6" not in upstream.received
    assert b"evil.example" not in upstream.received
    # The forwarding headers are the proxy's own, whatever the client claimed.
    assert req.header("x-forwarded-for") == "127.0.0.1"
    assert req.header("x-forwarded-proto") == "http"
    assert req.header("x-forwarded-host") == "shop.example"
    assert req.names.count("x-forwarded-for") == 1


async def test_connection_header_cannot_strip_what_the_proxy_adds(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    status, headers = await one_request(
        proxy,
        b"GET /p HTTP/1.1\r\nHost: shop.example\r\nConnection: X-Forwarded-For, "
        b"X-Forwarded-Proto, X-Forwarded-Host, X-Request-ID, Host, Content-Length\r\n\r\n",
    )
    assert status == 200
    (req,) = upstream.requests
    for name in (
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ):
        assert name in req.names, name
    assert any(n.lower() == "x-request-id" for n, _ in headers)


def _legacy_key() -> str:
    split = WeightedSplit((("orders", 1.0), ("legacy", 99.0)))
    return next(
        k for k in (f"user-{n}" for n in range(1000)) if split.choose(bucket_of(k)) == "legacy"
    )


CANARY = {
    "stage": "canary",
    "split": "{targets: [{upstream: orders, weight: 1}, {upstream: legacy, weight: 99}], "
    "sticky: {header: X-User-Id}}",
}


@pytest.mark.parametrize("with_override", [False, True], ids=["no_override", "override_set"])
async def test_override_header_only_works_when_configured(
    proxy_factory: ProxyFactory,
    upstream: RecordingUpstream,
    orders: RecordingUpstream,
    with_override: bool,
) -> None:
    route = dict(CANARY)
    if with_override:
        route["split"] = route["split"][:-1] + ", override: {header: X-Strangler-Upstream}}"
    proxy = await proxy_factory(config(legacy=upstream.port, orders=orders.port, route=route))
    status, _ = await one_request(
        proxy,
        b"GET /api/orders/7 HTTP/1.1\r\nHost: shop.example\r\nX-User-Id: "
        + _legacy_key().encode()
        + b"\r\nX-Strangler-Upstream: orders\r\n\r\n",
    )
    assert status == 200
    served = orders if with_override else upstream
    idle = upstream if with_override else orders
    (req,) = served.requests
    assert idle.requests == []
    assert "x-strangler-upstream" not in req.names


async def test_client_fallback_header_neither_forwarded_nor_echoed(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, orders: RecordingUpstream
) -> None:
    route = {"stage": "migrated", "fallback": "{upstream: legacy}"}
    proxy = await proxy_factory(config(legacy=upstream.port, orders=orders.port, route=route))
    status, headers = await one_request(
        proxy,
        b"GET /api/orders/7 HTTP/1.1\r\nHost: shop.example\r\n"
        b"X-Strangler-Fallback: breaker_open\r\n\r\n",
    )
    assert status == 200
    assert [r.target for r in orders.requests] == ["/api/orders/7"]
    assert upstream.requests == []
    assert "x-strangler-fallback" not in orders.requests[0].names
    assert not any(n.lower() == "x-strangler-fallback" for n, _ in headers)


async def test_trusted_forwarding_appends_and_keeps(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    """Behind a trusted balancer the client's chain is kept and the peer appended."""
    extra = "forwarding: {trust_forwarded_headers: true}\n"
    proxy = await proxy_factory(config(legacy=upstream.port, extra=extra))
    status, _ = await one_request(
        proxy,
        b"GET /p HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 10.0.0.9\r\n"
        b"X-Forwarded-Proto: https\r\n\r\n",
    )
    assert status == 200
    (req,) = upstream.requests
    assert req.header("x-forwarded-for") == "10.0.0.9, 127.0.0.1"
    assert req.header("x-forwarded-proto") == "https"
