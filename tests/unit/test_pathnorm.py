"""Tests of strangler.pathnorm: every reject reason, every normalisation, query kept verbatim."""

from __future__ import annotations

import json
import random
import re

import pytest

from strangler.pathnorm import Target, UnsafeTarget, _normalize_slow, _plain, normalize_target

REJECTED = [
    ("nul-raw", b"/a\x00b", "nul"),
    ("nul-encoded", b"/a%00b", "nul"),
    ("control-raw-tab", b"/a\tb", "control_char"),
    ("control-raw-del", b"/a\x7fb", "control_char"),
    ("control-encoded-lf", b"/a%0ab", "control_char"),
    ("control-encoded-cr-upper", b"/a%0Db", "control_char"),
    ("control-encoded-del", b"/a%7fb", "control_char"),
    ("control-raw-in-query", b"/a?x=\r\n", "control_char"),
    ("fragment", b"/a#frag", "fragment"),
    ("fragment-after-query", b"/a?x=1#frag", "fragment"),
    ("backslash-raw", b"/a\\..\\b", "backslash"),
    ("backslash-encoded", b"/a/%5c../b", "backslash"),
    ("backslash-encoded-upper", b"/a/%5C", "backslash"),
    ("encoded-slash-lower", b"/api/orders%2f..%2fadmin", "encoded_slash"),
    ("encoded-slash-upper", b"/a%2Fb", "encoded_slash"),
    ("double-encoded-dot", b"/a/%252e%252e/b", "double_encoding"),
    ("double-encoded-slash", b"/a%252Fb", "double_encoding"),
    ("double-encoded-backslash", b"/a%255cb", "double_encoding"),
    ("double-encoded-nul", b"/a%2500", "double_encoding"),
    ("double-encoded-via-unreserved", b"/a/%25%32%65", "double_encoding"),
    ("bad-percent-non-hex", b"/a%zzb", "bad_percent"),
    ("bad-percent-truncated-end", b"/a%2", "bad_percent"),
    ("bad-percent-bare", b"/a%", "bad_percent"),
    ("bad-percent-before-slash", b"/a%4/b", "bad_percent"),
    ("bad-utf8-lone-continuation", b"/a%80", "bad_utf8"),
    ("bad-utf8-overlong-2-byte-dot", b"/a/%c0%ae%c0%ae/b", "bad_utf8"),
    ("bad-utf8-overlong-3-byte-dot", b"/a/%e0%80%ae", "bad_utf8"),
    ("bad-utf8-overlong-slash", b"/a%c0%afb", "bad_utf8"),
    ("bad-utf8-surrogate", b"/a%ed%a0%80", "bad_utf8"),
    ("bad-utf8-raw-byte", b"/a\xffb", "bad_utf8"),
    ("dot-dot-param", b"/api/..;/admin", "dot_segment_param"),
    ("dot-param-value", b"/api/.;x=1/admin", "dot_segment_param"),
    ("encoded-dot-dot-param", b"/api/%2e%2e;/admin", "dot_segment_param"),
    ("dot-dot-encoded-semicolon", b"/api/..%3b/admin", "dot_segment_param"),
    ("escape-at-root", b"/..", "dot_segment_escape"),
    ("escape-after-resolve", b"/a/../../etc/passwd", "dot_segment_escape"),
    ("escape-encoded", b"/%2e%2e/x", "dot_segment_escape"),
    ("asterisk", b"*", "asterisk"),
    ("relative", b"api/orders", "not_origin_form"),
    ("other-scheme", b"ftp://host/x", "not_origin_form"),
    ("authority-form", b"example.com:443", "not_origin_form"),
    ("absolute-userinfo", b"http://user@evil.com/x", "bad_authority"),
    ("absolute-empty-authority", b"http:///x", "bad_authority"),
    ("empty", b"", "empty"),
]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejects_unsafe_target(raw: bytes, reason: str) -> None:
    with pytest.raises(UnsafeTarget) as caught:
        normalize_target(raw)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


NORMALISED = [
    ("plain", b"/api/orders/7", "/api/orders/7"),
    ("root", b"/", "/"),
    ("trailing-slash-kept", b"/api/orders/", "/api/orders/"),
    ("encoded-dot-dot-resolved", b"/api/orders/%2e%2e/admin", "/api/admin"),
    ("encoded-dot-dot-upper", b"/api/orders/%2E%2E/admin", "/api/admin"),
    ("mixed-dot-dot", b"/api/orders/.%2e/admin", "/api/admin"),
    ("dot-segment-removed", b"/api//orders/./7", "/api/orders/7"),
    ("dot-dot-resolved", b"/a/b/../c", "/a/c"),
    ("trailing-dot-dot-leaves-slash", b"/a/b/..", "/a/"),
    ("trailing-dot-leaves-slash", b"/a/b/.", "/a/b/"),
    ("dot-dot-to-root", b"/a/..", "/"),
    ("leading-double-slash", b"//evil.example/x", "/evil.example/x"),
    ("many-slashes", b"/a///b////", "/a/b/"),
    ("unreserved-decoded", b"/%41%7a%30%2d%5f%7e", "/Az0-_~"),
    ("reserved-kept-upper", b"/a%3ab%2a%40", "/a%3Ab%2A%40"),
    ("percent-kept-upper", b"/100%25", "/100%25"),
    ("space-kept", b"/a%20b", "/a%20b"),
    ("utf8-kept-upper", b"/caf%c3%a9", "/caf%C3%A9"),
    ("raw-utf8-encoded", "/café".encode(), "/caf%C3%A9"),
    ("raw-space-encoded", b"/a b", "/a%20b"),
    ("raw-quote-encoded", b'/a"<b>', "/a%22%3Cb%3E"),
    ("params-kept", b"/a;jsessionid=1/b", "/a;jsessionid=1/b"),
    ("dots-inside-name", b"/static/app.min.js", "/static/app.min.js"),
    ("dot-prefixed-name", b"/.well-known/x", "/.well-known/x"),
    ("triple-dot-is-a-name", b"/a/.../b", "/a/.../b"),
    ("sub-delims-kept", b"/a!$&'()*+,=:@b", "/a!$&'()*+,=:@b"),
]


@pytest.mark.parametrize(
    ("raw", "path"), [c[1:] for c in NORMALISED], ids=[c[0] for c in NORMALISED]
)
def test_normalises_path(raw: bytes, path: str) -> None:
    target = normalize_target(raw)
    assert target.path == path
    assert target.authority is None
    assert target.query == b""
    assert target.has_query is False


@pytest.mark.parametrize(
    ("raw", "path"), [c[1:] for c in NORMALISED], ids=[c[0] for c in NORMALISED]
)
def test_normalisation_is_idempotent(raw: bytes, path: str) -> None:
    assert normalize_target(path.encode("ascii")).path == path


QUERIES = [
    ("none", b"/a", b"", False),
    ("empty", b"/a?", b"", True),
    ("plain", b"/a?x=1&y=2", b"x=1&y=2", True),
    ("encoded-slash-fine-in-query", b"/a?next=%2Fadmin%2f", b"next=%2Fadmin%2f", True),
    ("dots-in-query", b"/a?p=../../etc", b"p=../../etc", True),
    ("lower-hex-kept", b"/a?q=%c3%a9&r=%zz", b"q=%c3%a9&r=%zz", True),
    ("second-question-mark", b"/a?x=?y", b"x=?y", True),
    ("slow-path-query", b"/a/./b?x=%2F", b"x=%2F", True),
    ("raw-non-ascii", b"/a?q=\xc3\xa9", b"q=\xc3\xa9", True),
]


@pytest.mark.parametrize(
    ("raw", "query", "has_query"), [c[1:] for c in QUERIES], ids=[c[0] for c in QUERIES]
)
def test_query_kept_byte_for_byte(raw: bytes, query: bytes, has_query: bool) -> None:
    target = normalize_target(raw)
    assert target.query == query
    assert target.has_query is has_query


ABSOLUTE = [
    ("http", b"http://example.com/a/b?x=1", Target("/a/b", b"x=1", True, "example.com")),
    ("https-port", b"https://example.com:8443/a", Target("/a", b"", False, "example.com:8443")),
    ("scheme-case", b"HTTP://Example.COM/a", Target("/a", b"", False, "example.com")),
    ("no-path", b"http://example.com", Target("/", b"", False, "example.com")),
    ("no-path-query", b"http://example.com?x", Target("/", b"x", True, "example.com")),
    ("ipv6", b"http://[::1]:8080/a", Target("/a", b"", False, "[::1]:8080")),
    ("normalised", b"http://h/a/%2e%2e/b", Target("/b", b"", False, "h")),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in ABSOLUTE], ids=[c[0] for c in ABSOLUTE]
)
def test_absolute_form_reduced_to_path(raw: bytes, expected: Target) -> None:
    assert normalize_target(raw) == expected


def test_target_is_frozen() -> None:
    target = normalize_target(b"/a")
    with pytest.raises(AttributeError):  # immutable
        target.path = "/b"  # type: ignore[misc]


def test_error_message_does_not_echo_target() -> None:
    with pytest.raises(UnsafeTarget) as caught:
        normalize_target(b"/<script>%00")
    assert "script" not in str(caught.value)


FAST_PATH_INPUTS = [
    b"/",
    b"/api/orders/7",
    b"/api/orders/",
    b"/static/app.min.js",
    b"/a!$&'()*+,=:@b/c~d-e_f",
    b"/a?x=1&y=%2F",
    b"/a?",
]


# The fast path's definition as a regular expression: "/" or non-empty segments not starting
# with ".", of pchar minus "%" and ";", an optional trailing slash, then an optional query free
# of control bytes and "#".
_PCHAR = rb"A-Za-z0-9\-_~!$&'()*+,=:@"
FAST_SPEC = re.compile(
    rb"(/|(?:/[" + _PCHAR + rb"][" + _PCHAR + rb".]*)+/?)(?:\?([^\x00-\x1f\x7f#]*))?"
)


@pytest.mark.parametrize("raw", FAST_PATH_INPUTS, ids=[r.decode() for r in FAST_PATH_INPUTS])
def test_fast_path_agrees_with_full_normalisation(raw: bytes) -> None:
    path, _, query = raw.partition(b"?")
    assert _plain(path, query)
    assert normalize_target(raw) == _normalize_slow(raw)


def test_fast_path_is_exactly_its_definition_on_random_targets() -> None:
    rng = random.Random(1729)
    alphabet = [*b"/./?%#;a:@~-", 0x00, 0x1F, 0x7F, 0x80, 0xFF, *b"AZaz09"]
    fast = 0
    for _ in range(20_000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        path, _, query = raw.partition(b"?")
        assert _plain(path, query) == (FAST_SPEC.fullmatch(raw) is not None), raw
        if _plain(path, query):
            fast += 1
            assert normalize_target(raw) == _normalize_slow(raw), raw
    assert fast > 200  # the sample reached the fast path often enough to say something


def test_every_normalised_path_is_a_json_string_as_is() -> None:
    # The access log writes paths between quotes without escaping them (AccessLog.proxied).
    rng = random.Random(4242)
    alphabet = [*b'/./?%#;a:@~-"\\ <>{}|^`', 0x00, 0x09, 0x1F, 0x7F, 0x80, 0xC3, 0xA9, 0xFF]
    alphabet += [*b"%22%5C%2e%C3%A9%E2%80%A8"]
    accepted = 0
    for _ in range(20_000):
        raw = b"/" + bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        try:
            path = normalize_target(raw).path
        except UnsafeTarget:
            continue
        accepted += 1
        assert json.dumps(path) == f'"{path}"', raw
    assert accepted > 2_000
