"""Durations and sizes as written in config files, and the other value converters."""

from __future__ import annotations

import pytest

from strangler.units import (
    as_header_name,
    as_host,
    as_int,
    as_method,
    as_path,
    as_percent,
    as_status_set,
    as_upstream_url,
    parse_duration,
    parse_size,
)

DURATIONS = [
    ("250ms", 0.25),
    ("5s", 5.0),
    ("1.5s", 1.5),
    ("1m", 60.0),
    ("2h", 7200.0),
    ("30d", 2_592_000.0),
    (" 10 s ", 10.0),
    ("0", 0.0),
    ("0ms", 0.0),
    (".5s", 0.5),
    (3, 3.0),
    (0.1, 0.1),
    ("7", 7.0),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS, ids=[str(d[0]) for d in DURATIONS])
def test_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


BAD_DURATIONS = [
    ("fast", "expected a duration such as 250ms or 5s, got 'fast'"),
    ("5 seconds", "expected a duration such as 250ms or 5s, got '5 seconds'"),
    ("5S", "expected a duration such as 250ms or 5s, got '5S'"),
    ("-1s", "expected a duration such as 250ms or 5s, got '-1s'"),
    ("1m30s", "expected a duration such as 250ms or 5s, got '1m30s'"),
    ("", "expected a duration such as 250ms or 5s, got ''"),
    (True, "expected a duration such as 250ms or 5s, got True"),
    (None, "expected a duration such as 250ms or 5s, got None"),
    ([1], "expected a duration such as 250ms or 5s, got [1]"),
    (-1, "expected a duration such as 250ms or 5s, got -1 (durations are finite and not negative)"),
    (
        float("inf"),
        "expected a duration such as 250ms or 5s, got inf (durations are finite and not negative)",
    ),
]


@pytest.mark.parametrize(
    ("value", "message"), BAD_DURATIONS, ids=[repr(d[0]) for d in BAD_DURATIONS]
)
def test_bad_duration(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


SIZES = [
    (0, 0),
    (1024, 1024),
    ("512B", 512),
    ("512", 512),
    ("64KiB", 65536),
    ("10MiB", 10 * 1024**2),
    ("1GiB", 1024**3),
    ("1TiB", 1024**4),
    ("1KB", 1000),
    ("10MB", 10_000_000),
    ("2GB", 2_000_000_000),
    ("1.5KiB", 1536),
    ("64kib", 65536),
    ("8 KiB", 8192),
]


@pytest.mark.parametrize(("text", "size"), SIZES, ids=[str(s[0]) for s in SIZES])
def test_size(text: object, size: int) -> None:
    assert parse_size(text) == size


BAD_SIZES = [
    ("big", "expected a size such as 64KiB or 10MiB, got 'big'"),
    (
        "8 parsecs",
        "expected a size such as 64KiB or 10MiB, got '8 parsecs' "
        "(units: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
    ),
    ("1.5B", "expected a size such as 64KiB or 10MiB, got '1.5B' (not a whole number of bytes)"),
    (-1, "expected a size such as 64KiB or 10MiB, got -1 (sizes are not negative)"),
    (1.5, "expected a size such as 64KiB or 10MiB, got 1.5"),
    (False, "expected a size such as 64KiB or 10MiB, got False"),
    ("-1KiB", "expected a size such as 64KiB or 10MiB, got '-1KiB'"),
]


@pytest.mark.parametrize(("value", "message"), BAD_SIZES, ids=[repr(s[0]) for s in BAD_SIZES])
def test_bad_size(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)
    assert str(caught.value) == message


def test_upstream_url_parts() -> None:
    url = as_upstream_url("http://Legacy.Internal:8001/base/")
    assert (url.host, url.port, url.base_path) == ("legacy.internal", 8001, "/base")
    assert as_upstream_url("http://127.0.0.1").port == 80
    assert as_upstream_url("http://127.0.0.1/").base_path == ""


@pytest.mark.parametrize(
    ("convert", "value", "result"),
    [
        (as_header_name, "X-Customer-Id", "x-customer-id"),
        (as_method, "patch", "PATCH"),
        (as_host, "Shop.Example.com.", "shop.example.com"),
        (as_host, "*.example.com", "*.example.com"),
        (as_path, "/api/orders", "/api/orders"),
        (as_percent, 12.5, 12.5),
        (as_percent, 0, 0.0),
        (as_int(0, 65535), 65535, 65535),
        (as_status_set, ["500-502", 504], frozenset({500, 501, 502, 504})),
        (as_status_set, 503, frozenset({503})),
    ],
    ids=[
        "header-lower-cased",
        "method-upper-cased",
        "host-lower-cased-dot-dropped",
        "host-wildcard",
        "path",
        "percent-fraction",
        "percent-zero",
        "port-max",
        "status-ranges",
        "status-single",
    ],
)
def test_converters(convert: object, value: object, result: object) -> None:
    assert callable(convert)
    assert convert(value) == result


@pytest.mark.parametrize(
    ("convert", "value", "message"),
    [
        (as_percent, True, "expected a percentage from 0 to 100, got True"),
        (as_percent, 100.5, "expected a percentage from 0 to 100, got 100.5"),
        (as_int(1), "3", "expected an integer, got '3'"),
        (as_int(1), True, "expected an integer, got True"),
        (as_status_set, ["599-500"], "status range '599-500' is empty"),
        (as_method, "GET /", "expected an HTTP method such as GET, got 'GET /'"),
        (
            as_path,
            "/a/./b",
            "path '/a/./b' would never match: requests are matched on their "
            "normalised path, write '/a/b'",
        ),
    ],
    ids=[
        "percent-bool",
        "percent-over",
        "int-string",
        "int-bool",
        "status-empty-range",
        "method-space",
        "path-dot-segment",
    ],
)
def test_converter_errors(convert: object, value: object, message: str) -> None:
    assert callable(convert)
    with pytest.raises(ValueError) as caught:
        convert(value)
    assert str(caught.value) == message
