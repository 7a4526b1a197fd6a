"""Hostile framing: ambiguous or malformed requests are refused at the edge and never forwarded.

Each refused request gets a 4xx (or 501 for a transfer coding the proxy does not implement), the
connection is closed, and the recording upstream saw no byte. Requests that are legal but oddly
spelled (optional whitespace around a value, upper-case `CHUNKED`) are accepted and re-framed by
the proxy in its own canonical spelling. Pipelined requests reach the upstream exactly as sent, and
chunked trailers never become upstream headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.adversarial.wire import Client, RecordingUpstream, config, exchange, split_responses
from tests.harness import ProxyHandle

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]

H = b"Host: a.example\r\n"
POST = b"POST /p HTTP/1.1\r\n" + H

REFUSED: list[tuple[str, bytes, set[int]]] = [
    # ---- Content-Length and Transfer-Encoding together, either order ----
    (
        "cl_then_te",
        POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    (
        "te_then_cl",
        POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        {400},
    ),
    (
        "te_on_http10",
        b"POST /p HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    # ---- Content-Length spelled wrong ----
    ("cl_list", POST + b"Content-Length: 1, 2\r\n\r\nab", {400}),
    ("cl_same_list", POST + b"Content-Length: 2, 2\r\n\r\nab", {400}),
    ("cl_duplicated_equal", POST + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nab", {400}),
    ("cl_duplicated_different", POST + b"Content-Length: 2\r\nContent-Length: 5\r\n\r\nab", {400}),
    ("cl_plus", POST + b"Content-Length: +5\r\n\r\nabcde", {400}),
    ("cl_negative", POST + b"Content-Length: -1\r\n\r\n", {400}),
    ("cl_padded", POST + b"Content-Length:  5 \r\n\r\nabcde", {400}),
    ("cl_inner_space", POST + b"Content-Length: 5 0\r\n\r\nabcde", {400}),
    ("cl_hex", POST + b"Content-Length: 0x5\r\n\r\nabcde", {400}),
    ("cl_hex_digits", POST + b"Content-Length: 5a\r\n\r\nabcde", {400}),
    ("cl_empty", POST + b"Content-Length: \r\n\r\n", {400}),
    ("cl_huge", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", {400, 413}),
    ("cl_vertical_tab", POST + b"Content-Length: 5\x0b\r\n\r\nabcde", {400}),
    # ---- Transfer-Encoding obfuscated ----
    ("te_xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400, 501}),
    (
        "te_chunked_identity",
        POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        {400, 501},
    ),
    ("te_identity", POST + b"Transfer-Encoding: identity\r\n\r\n", {400, 501}),
    ("te_gzip_chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", {501}),
    (
        "te_chunked_chunked",
        POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        {400, 501},
    ),
    (
        "te_duplicated",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400, 501},
    ),
    (
        "te_duplicated_gzip",
        POST + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400, 501},
    ),
    ("te_tab_before_colon", POST + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("te_space_before_colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", {400}),
    ("te_vertical_tab", POST + b"Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", {400}),
    ("te_form_feed", POST + b"Transfer-Encoding:\x0cchunked\r\n\r\n0\r\n\r\n", {400}),
    ("te_obs_fold", POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", {400}),
    # ---- chunk sizes ----
    ("chunk_0x", POST + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nabcde\r\n0\r\n\r\n", {400}),
    ("chunk_negative", POST + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nabcde\r\n0\r\n\r\n", {400}),
    (
        "chunk_huge",
        POST + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nab\r\n",
        {400, 413},
    ),
    ("chunk_not_hex", POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", {400}),
    (
        "chunk_space_in_size",
        POST + b"Transfer-Encoding: chunked\r\n\r\n5 5\r\nabcde\r\n0\r\n\r\n",
        {400},
    ),
    ("chunk_bare_lf", POST + b"Transfer-Encoding: chunked\r\n\r\n5\nabcde\r\n0\r\n\r\n", {400}),
    (
        "chunk_data_overrun",
        POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabcde\r\n0\r\n\r\n",
        {400},
    ),
    # ---- line endings, folding, control bytes ----
    ("bare_lf_request_line", b"GET / HTTP/1.1\n" + H + b"\r\n", {400}),
    ("bare_lf_headers", b"GET / HTTP/1.1\r\nHost: a.example\nX-A: b\n\n", {400}),
    ("bare_cr_request_line", b"GET / HTTP/1.1\rHost: a.example\r\n\r\n", {400}),
    ("bare_cr_in_header", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\rX-B: c\r\n\r\n", {400}),
    ("obs_fold_space", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", {400}),
    ("obs_fold_tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n\tc\r\n\r\n", {400}),
    ("header_nul", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n", {400}),
    ("header_ctl", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x01c\r\n\r\n", {400}),
    ("header_del", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x7fc\r\n\r\n", {400}),
    ("header_escape", b"GET / HTTP/1.1\r\n" + H + b"X-A: \x1b[31mred\r\n\r\n", {400}),
    ("header_name_space", b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", {400}),
    ("header_name_ctl", b"GET / HTTP/1.1\r\n" + H + b"X\x01A: b\r\n\r\n", {400}),
    ("header_no_colon", b"GET / HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n", {400}),
    ("header_empty_name", b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n", {400}),
    ("line_ctl_in_target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("line_del_in_target", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("line_nul_in_target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("line_tab_in_target", b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("line_ctl_in_method", b"G\x01T / HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("line_http09", b"GET /\r\n" + H + b"\r\n", {400, 505}),
    ("line_bad_version", b"GET / HTTP/1.x\r\n" + H + b"\r\n", {400, 505}),
    ("line_lower_version", b"GET / http/1.1\r\n" + H + b"\r\n", {400}),
    ("line_http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}),
    ("two_hosts", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", {400}),
    ("host_with_at", b"GET / HTTP/1.1\r\nHost: a@b.example\r\n\r\n", {400}),
    ("host_with_slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", {400}),
]


@pytest.mark.parametrize(
    ("request_bytes", "statuses"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
async def test_malformed_framing_refused_and_never_forwarded(
    proxy_factory: ProxyFactory,
    upstream: RecordingUpstream,
    request_bytes: bytes,
    statuses: set[int],
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    raw, closed = await exchange(proxy.port, request_bytes)
    responses, _ = split_responses(raw)
    assert [r.status for r in responses][:1] and responses[0].status in statuses, raw[:200]
    assert len(responses) == 1
    assert closed, "the proxy must close the connection after a framing error"
    await asyncio.sleep(0.05)
    assert upstream.received == b""
    assert upstream.requests == []


async def test_bad_chunk_after_head_aborts_the_upstream_request(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream
) -> None:
    """The head was already streamed upstream: the request is cut, never completed."""
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    await client.send(POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
    for _ in range(100):
        if upstream.heads:
            break
        await asyncio.sleep(0.01)
    await client.send(b"0x5\r\nabcde\r\n0\r\n\r\n")
    raw, closed = await client.read_all()
    client.close()
    assert closed
    responses, _ = split_responses(raw)
    assert [r.status for r in responses] in ([400], [])
    await asyncio.wait_for(upstream.conns[0].closed.wait(), 2)
    assert upstream.requests == []


LEGAL_ODDITIES: list[tuple[str, bytes, bytes]] = [
    ("cl_leading_zeros", POST + b"Content-Length: 005\r\n\r\nabcde", b"content-length: 5\r\n"),
    (
        "te_upper_case",
        POST + b"Transfer-Encoding: CHUNKED\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
        b"transfer-encoding: chunked\r\n",
    ),
    (
        "te_with_ows",
        POST + b"Transfer-Encoding: \tchunked \r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
        b"transfer-encoding: chunked\r\n",
    ),
    (
        "chunk_extension",
        POST + b"Transfer-Encoding: chunked\r\n\r\n5;name=v\r\nabcde\r\n0\r\n\r\n",
        b"transfer-encoding: chunked\r\n",
    ),
]


@pytest.mark.parametrize(
    ("request_bytes", "framing"),
    [c[1:] for c in LEGAL_ODDITIES],
    ids=[c[0] for c in LEGAL_ODDITIES],
)
async def test_legal_oddities_are_reframed_canonically(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, request_bytes: bytes, framing: bytes
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    await client.send(request_bytes)
    (resp,) = await client.read_responses(1)
    client.close()
    assert resp.status == 200
    (req,) = upstream.requests
    assert req.body == b"abcde"
    head = upstream.received.partition(b"\r\n\r\n")[0] + b"\r\n"
    assert framing in head
    assert b";name" not in upstream.received


SAFE_SPELLINGS: list[tuple[str, bytes, bytes, bytes]] = [
    # An underscore twin of a framing header is dropped (never folded into Transfer-Encoding).
    (
        "te_underscore_twin",
        POST + b"Transfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /p HTTP/1.1\r\n",
        b"transfer_encoding",
    ),
    # The proxy writes its own request line: extra spaces never reach the upstream.
    (
        "request_line_double_space",
        b"GET  /p HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /p HTTP/1.1\r\n",
        b"  ",
    ),
]


@pytest.mark.parametrize(
    ("request_bytes", "line", "absent"),
    [c[1:] for c in SAFE_SPELLINGS],
    ids=[c[0] for c in SAFE_SPELLINGS],
)
async def test_odd_spellings_forwarded_only_in_canonical_form(
    proxy_factory: ProxyFactory,
    upstream: RecordingUpstream,
    request_bytes: bytes,
    line: bytes,
    absent: bytes,
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    await client.send(request_bytes)
    (resp,) = await client.read_responses(1)
    client.close()
    assert resp.status == 200
    assert upstream.received.startswith(line)
    assert absent not in upstream.received.lower()
    assert len(upstream.requests) == 1


# ---- pipelining and smuggling -------------------------------------------------------------
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n"
PIPELINES: list[tuple[str, bytes, list[tuple[str, str, bytes]]]] = [
    (
        "request_inside_content_length_body",
        b"GET /a HTTP/1.1\r\n"
        + H
        + b"\r\n"
        + POST
        + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED
        + b"GET /c HTTP/1.1\r\n"
        + H
        + b"\r\n",
        [("GET", "/a", b""), ("POST", "/p", SMUGGLED), ("GET", "/c", b"")],
    ),
    (
        "request_inside_chunked_body",
        POST
        + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED)
        + SMUGGLED
        + b"\r\n0\r\n\r\n"
        + b"GET /c HTTP/1.1\r\n"
        + H
        + b"\r\n",
        [("POST", "/p", SMUGGLED), ("GET", "/c", b"")],
    ),
    (
        "zero_length_then_request",
        POST + b"Content-Length: 0\r\n\r\n" + b"GET /c HTTP/1.1\r\n" + H + b"\r\n",
        [("POST", "/p", b""), ("GET", "/c", b"")],
    ),
    (
        "get_with_body",
        b"GET /a HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
        [("GET", "/a", SMUGGLED)],
    ),
]


@pytest.mark.parametrize(
    ("request_bytes", "expected"), [c[1:] for c in PIPELINES], ids=[c[0] for c in PIPELINES]
)
async def test_pipelined_requests_reach_the_upstream_exactly_as_sent(
    proxy_factory: ProxyFactory,
    upstream: RecordingUpstream,
    request_bytes: bytes,
    expected: list[tuple[str, str, bytes]],
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    client = await Client.open(proxy.port)
    await client.send(request_bytes)
    responses = await client.read_responses(len(expected))
    await asyncio.sleep(0.05)
    client.close()
    assert [r.status for r in responses] == [200] * len(expected)
    got = [(r.method, r.target, r.body) for r in upstream.requests]
    assert got == expected
    assert [r.body for r in responses] == [
        b'{"target": "%s", "n": %d}' % (t.encode(), len(b)) for _, t, b in expected
    ]


TRAILER = (
    b"Transfer-Encoding: chunked\r\nTrailer: X-Evil\r\n\r\n5\r\nabcde\r\n0\r\n"
    b"X-Evil: trailer-value\r\nX-Forwarded-For: 6.6.6.6\r\nX-Strangler-Shadow: 1\r\n\r\n"
)


@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "queued_behind_another"])
async def test_trailers_never_become_upstream_headers(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, pipelined: bool
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    first = b"GET /first HTTP/1.1\r\n" + H + b"\r\n" if pipelined else b""
    client = await Client.open(proxy.port)
    await client.send(first + POST + TRAILER + b"GET /after HTTP/1.1\r\n" + H + b"\r\n")
    count = 3 if pipelined else 2
    responses = await client.read_responses(count)
    client.close()
    assert [r.status for r in responses] == [200] * count
    assert [r.target for r in upstream.requests][-2:] == ["/p", "/after"]
    assert b"trailer-value" not in upstream.received
    assert b"6.6.6.6" not in upstream.received
    assert b"x-strangler-shadow" not in upstream.received.lower()
    post = upstream.requests[-2]
    assert post.body == b"abcde"
    assert "x-evil" not in post.names and "trailer" not in post.names
