"""Tests of strangler.headers: hop-by-hop filtering both ways, heads, request ids, CTL checks."""

from __future__ import annotations

import random

import pytest

from strangler.headers import (
    HeaderKinds,
    connection_tokens,
    is_valid_request_id,
    render_request_head,
    render_response_head,
    request_drop_set,
    scan_request,
    scan_response,
    without_cookie,
)

Headers = list[tuple[bytes, bytes]]

CONNECTION_TOKENS = [
    # (id, Connection values, expected tokens)
    ("none", [], frozenset()),
    ("single", [b"close"], {b"close"}),
    ("list-lowercased", [b"Keep-Alive, X-Custom"], {b"keep-alive", b"x-custom"}),
    ("several-values", [b"x-a", b"X-B"], {b"x-a", b"x-b"}),
    ("empty-items-skipped", [b" , ,x-a,, "], {b"x-a"}),
    ("whitespace-trimmed", [b"  upgrade  ,\tx-b "], {b"upgrade", b"x-b"}),
]


@pytest.mark.parametrize(
    ("values", "expected"),
    [c[1:] for c in CONNECTION_TOKENS],
    ids=[c[0] for c in CONNECTION_TOKENS],
)
def test_connection_tokens(values: list[bytes], expected: set[bytes]) -> None:
    assert connection_tokens(values) == frozenset(expected)


REQUEST_SCAN = [
    # (id, raw headers (names lower-cased as the server passes them), trust_forwarded,
    #  expected kept)
    (
        "end-to-end-kept-in-order",
        [(b"accept", b"*/*"), (b"x-b", b"2"), (b"x-a", b"1"), (b"x-b", b"3")],
        False,
        [(b"accept", b"*/*"), (b"x-b", b"2"), (b"x-a", b"1"), (b"x-b", b"3")],
    ),
    (
        "hop-by-hop-dropped",
        [
            (b"connection", b"keep-alive"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-connection", b"keep-alive"),
            (b"proxy-authorization", b"Basic eA=="),
            (b"te", b"trailers"),
            (b"trailer", b"x-t"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"h2c"),
            (b"content-length", b"3"),
            (b"host", b"a"),
            (b"expect", b"100-continue"),
            (b"accept", b"*/*"),
        ],
        False,
        [(b"accept", b"*/*")],
    ),
    (
        "connection-listed-dropped",
        [(b"connection", b"X-Secret, keep-alive"), (b"x-secret", b"1"), (b"x-keep", b"2")],
        False,
        [(b"x-keep", b"2")],
    ),
    (
        "connection-cannot-strip-what-the-proxy-adds",
        [(b"connection", b"x-forwarded-for, x-request-id"), (b"x-keep", b"2")],
        False,
        [(b"x-keep", b"2")],
    ),
    (
        "underscore-names-dropped",
        [(b"x_forwarded_for", b"1.2.3.4"), (b"x_user", b"admin"), (b"x-user", b"bob")],
        True,
        [(b"x-user", b"bob")],
    ),
    (
        "forwarding-dropped-untrusted",
        [
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"evil"),
            (b"forwarded", b"for=6.6.6.6"),
            (b"x-real-ip", b"6.6.6.6"),
            (b"accept", b"*/*"),
        ],
        False,
        [(b"accept", b"*/*")],
    ),
    (
        "forwarding-kept-trusted-xff-rewritten-by-proxy",
        [
            (b"x-forwarded-for", b"1.2.3.4"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"shop"),
        ],
        True,
        [(b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"shop")],
    ),
    (
        "internal-dropped",
        [(b"x-strangler-upstream", b"orders"), (b"x-strangler-fallback", b"x")],
        False,
        [],
    ),
    (
        "request-id-not-kept-the-proxy-sends-its-own",
        [(b"x-request-id", b"abc"), (b"accept", b"*/*")],
        False,
        [(b"accept", b"*/*")],
    ),
    ("no-accept-encoding-or-user-agent-added", [], False, []),
]


@pytest.mark.parametrize(
    ("raw", "trust", "expected"),
    [c[1:] for c in REQUEST_SCAN],
    ids=[c[0] for c in REQUEST_SCAN],
)
def test_scan_request_keeps_only_end_to_end_headers(
    raw: Headers, trust: bool, expected: Headers
) -> None:
    scan = scan_request(raw, request_drop_set(trust_forwarded=trust), b"x-request-id")
    assert scan.kept == expected


def test_scan_request_collects_what_the_proxy_acts_on() -> None:
    raw = [
        (b"host", b"a"),
        (b"host", b"b"),
        (b"content-length", b"3"),
        (b"transfer-encoding", b"chunked"),
        (b"expect", b"100-continue"),
        (b"upgrade", b"websocket"),
        (b"x-request-id", b"bad id"),
        (b"x-request-id", b"good-id"),
    ]
    scan = scan_request(raw, request_drop_set(trust_forwarded=False), b"x-request-id")
    assert scan.hosts == [b"a", b"b"]
    assert scan.lengths == [b"3"]
    assert scan.te == [b"chunked"]
    assert (scan.expect, scan.upgrade) == (b"100-continue", b"websocket")
    assert scan.request_id == b"good-id"  # the first well-formed one


RESPONSE_SCAN = [
    # (id, raw headers as the upstream sent them, expected head lines after the status line)
    (
        "end-to-end-kept-with-case",
        [(b"Content-Type", b"text/plain"), (b"Content-Encoding", b"gzip"), (b"ETag", b'"1"')],
        [b"Content-Type: text/plain\r\n", b"Content-Encoding: gzip\r\n", b'ETag: "1"\r\n'],
    ),
    (
        "hop-by-hop-and-framing-dropped",
        [
            (b"Connection", b"keep-alive"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Connection", b"x"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"TE", b"x"),
            (b"Trailer", b"x-t"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"h2c"),
            (b"Content-Length", b"5"),
            (b"Server", b"s"),
        ],
        [b"Server: s\r\n"],
    ),
    (
        "connection-listed-dropped",
        [(b"Connection", b"X-Internal, close"), (b"X-Internal", b"10.0.0.1"), (b"X-Ok", b"1")],
        [b"X-Ok: 1\r\n"],
    ),
    (
        "upstream-request-id-dropped",
        [(b"X-Request-ID", b"theirs"), (b"X-Ok", b"1")],
        [b"X-Ok: 1\r\n"],
    ),
    (
        "set-cookie-repeated-kept",
        [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")],
        [b"Set-Cookie: a=1\r\n", b"Set-Cookie: b=2\r\n"],
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [c[1:] for c in RESPONSE_SCAN],
    ids=[c[0] for c in RESPONSE_SCAN],
)
def test_scan_response_renders_only_end_to_end_headers(raw: Headers, expected: list[bytes]) -> None:
    parts, _, _ = scan_response(200, raw)
    assert parts[0] == b"HTTP/1.1 200 OK\r\n"
    assert b"".join(parts[1:]) == b"".join(expected)


def test_scan_response_reports_framing() -> None:
    raw = [(b"Content-Length", b"5"), (b"content-length", b"6"), (b"Transfer-Encoding", b"x")]
    _, length, chunked = scan_response(200, raw)
    assert (length, chunked) == (b"5", True)
    assert scan_response(204, [])[1:] == (None, False)


def test_scan_response_memo_never_changes_an_answer() -> None:
    # One memo across responses whose names repeat, shift, change case and run long: every
    # answer equals the memo-free one.
    rng = random.Random(7)
    names = [
        b"Server", b"Date", b"Content-Type", b"Content-Length", b"content-length", b"Connection",
        b"Keep-Alive", b"X-Request-Id", b"Transfer-Encoding", b"ETag", b"Set-Cookie", b"X-Odd",
    ]  # fmt: skip
    usual = [(name, b"v") for name in names[:6]]
    memo = HeaderKinds()
    for _ in range(2_000):
        if rng.random() < 0.5:
            raw = usual
        else:
            raw = [
                (rng.choice(names), b"%d" % rng.randint(0, 9)) for _ in range(rng.randint(0, 40))
            ]
        assert scan_response(200, raw, memo) == scan_response(200, raw)
    assert len(memo.names) <= 32


REQUEST_HEADS = [
    (
        "get-no-framing",
        (b"GET", b"/a?b=1", b"svc:80", [(b"accept", b"*/*")], [(b"x-request-id", b"r1")], b""),
        b"GET /a?b=1 HTTP/1.1\r\nhost: svc:80\r\naccept: */*\r\nx-request-id: r1\r\n\r\n",
    ),
    (
        "post-with-length",
        (b"POST", b"/p", b"svc", [], [], b"content-length: 3\r\n"),
        b"POST /p HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\r\n",
    ),
    (
        "chunked",
        (b"PUT", b"/p", b"svc", [(b"x-a", b"1")], [], b"transfer-encoding: chunked\r\n"),
        b"PUT /p HTTP/1.1\r\nhost: svc\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n",
    ),
]


@pytest.mark.parametrize(
    ("args", "expected"), [c[1:] for c in REQUEST_HEADS], ids=[c[0] for c in REQUEST_HEADS]
)
def test_render_request_head(args: tuple[object, ...], expected: bytes) -> None:
    assert render_request_head(*args) == expected  # type: ignore[arg-type]


RESPONSE_HEADS = [
    (
        "known-reason",
        (200, [(b"Content-Type", b"text/plain")], b"content-length: 2\r\n", None),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 2\r\n\r\n",
    ),
    (
        "unknown-status-empty-reason",
        (299, [], b"", None),
        b"HTTP/1.1 299 \r\n\r\n",
    ),
    (
        "explicit-reason",
        (418, [], b"content-length: 0\r\n", b"I'm a teapot"),
        b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n",
    ),
    (
        "no-content",
        (204, [(b"x-request-id", b"r")], b"", None),
        b"HTTP/1.1 204 No Content\r\nx-request-id: r\r\n\r\n",
    ),
]


@pytest.mark.parametrize(
    ("args", "expected"), [c[1:] for c in RESPONSE_HEADS], ids=[c[0] for c in RESPONSE_HEADS]
)
def test_render_response_head(args: tuple[object, ...], expected: bytes) -> None:
    assert render_response_head(*args) == expected  # type: ignore[arg-type]


REQUEST_IDS = [
    ("hex", b"0f3a9c", True),
    ("uuid", b"123e4567-e89b-12d3-a456-426614174000", True),
    ("dots-colons-underscores", b"svc.a:1_b", True),
    ("max-length", b"a" * 128, True),
    ("too-long", b"a" * 129, False),
    ("empty", b"", False),
    ("space", b"a b", False),
    ("crlf", b"a\r\nx-evil: 1", False),
    ("quote", b'a"b', False),
    ("non-ascii", "é".encode(), False),
    ("slash", b"a/b", False),
]


@pytest.mark.parametrize(
    ("value", "valid"), [c[1:] for c in REQUEST_IDS], ids=[c[0] for c in REQUEST_IDS]
)
def test_is_valid_request_id(value: bytes, valid: bool) -> None:
    assert is_valid_request_id(value) is valid


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([(b"cookie", b"o=x:s")], [], id="only-cookie-dropped"),
        pytest.param([(b"cookie", b"a=1; o=x:s; b=2")], [(b"cookie", b"a=1; b=2")], id="middle"),
        pytest.param([(b"cookie", b"oo=1; a=2")], [(b"cookie", b"oo=1; a=2")], id="prefix-name"),
        pytest.param(
            [(b"x-o", b"o=1"), (b"cookie", b"a=1")],
            [(b"x-o", b"o=1"), (b"cookie", b"a=1")],
            id="other-headers-untouched",
        ),
    ],
)
def test_without_cookie(
    headers: list[tuple[bytes, bytes]], expected: list[tuple[bytes, bytes]]
) -> None:
    assert without_cookie(headers, b"o") == expected
