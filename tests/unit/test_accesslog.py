"""The access log's lines: valid JSON, one per request, cheap to build, batched per flush."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from strangler.accesslog import AccessLog, milliseconds, quote_json


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _proxied(log: AccessLog, path: str = "/api/orders/7", **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "request_id": b"abc-123",
        "method": b"GET",
        "path": path,
        "route_json": quote_json("orders").encode(),
        "upstream_json": quote_json("orders-svc").encode(),
        "status": 200,
        "duration_us": 1234,
        "size": 190,
        "client_json": quote_json("127.0.0.1").encode(),
    }
    fields.update(overrides)
    log.proxied(**fields)


@pytest.mark.parametrize(
    ("microseconds", "text"),
    [
        (0, "0.000"),
        (5, "0.005"),
        (1234, "1.234"),
        (12_000, "12.000"),
        (3_600_000_001, "3600000.001"),
    ],
)
def test_milliseconds_are_exact_decimal_numbers(microseconds: int, text: str) -> None:
    assert milliseconds(microseconds) == text
    assert json.loads(text) == microseconds / 1000


def test_proxied_line_holds_every_field() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    _proxied(log)
    log.flush()
    (line,) = _lines(stream)
    ts = line.pop("ts")
    assert isinstance(ts, float)
    assert line == {
        "event": "access",
        "request_id": "abc-123",
        "method": "GET",
        "path": "/api/orders/7",
        "route": "orders",
        "upstream": "orders-svc",
        "status": 200,
        "duration_ms": 1.234,
        "bytes": 190,
        "client": "127.0.0.1",
    }


def test_general_line_leaves_out_what_is_unknown_and_says_why() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    log.log("rid", "POST", "/x", "r", "legacy", 503, 2500, 0, "::1", "breaker_open", None)
    log.log("rid2", None, None, None, None, 400, None, None, "10.0.0.1", None, "bad_request")
    log.flush()
    first, second = _lines(stream)
    assert first["fallback"] == "breaker_open"
    assert first["duration_ms"] == 2.5
    assert "error" not in first
    assert {k: v for k, v in second.items() if k != "ts"} == {
        "event": "access",
        "request_id": "rid2",
        "status": 400,
        "client": "10.0.0.1",
        "error": "bad_request",
    }


def test_both_forms_give_the_same_line() -> None:
    fast, general = io.StringIO(), io.StringIO()
    one, two = AccessLog(fast), AccessLog(general)
    _proxied(one)
    two.log(
        "abc-123", "GET", "/api/orders/7", "orders", "orders-svc", 200, 1234, 190, "127.0.0.1",
        None, None,
    )  # fmt: skip
    one.flush()
    two.flush()
    ((a,), (b,)) = _lines(fast), _lines(general)
    a.pop("ts")
    b.pop("ts")
    assert a == b


@pytest.mark.parametrize(
    "path",
    ['/a"b', "/a\\b", "/a\nb", '/a\r\n{"event":"forged"}', "/caf\u00e9", "/\u2028", "/\x00"],
)
def test_hostile_paths_stay_inside_one_line(path: str) -> None:
    # The general line escapes every string. The fast line (`proxied`) takes paths as
    # strangler.pathnorm returns them, which never need escaping (tests/unit/test_pathnorm.py).
    stream = io.StringIO()
    log = AccessLog(stream)
    log.log("abc", "GET", path, "r", "u", 200, 1, 2, "127.0.0.1", None, None)
    _proxied(log, path="/next")
    log.flush()
    lines = _lines(stream)
    assert [line["path"] for line in lines] == [path, "/next"]
    assert stream.getvalue().isascii()


def test_one_write_and_one_timestamp_per_batch() -> None:
    writes: list[str] = []

    class Recording(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return super().write(text)

    stream = Recording()
    log = AccessLog(stream)
    for status in (200, 201, 404):
        _proxied(log, status=status)
    log.flush()
    log.flush()  # nothing queued: nothing written
    assert len(writes) == 1
    lines = _lines(stream)
    assert [line["status"] for line in lines] == [200, 201, 404]
    assert len({line["ts"] for line in lines}) == 1


def test_queue_is_bounded_and_drops_are_counted() -> None:
    stream = io.StringIO()
    log = AccessLog(stream, max_queued=2)
    for _ in range(5):
        _proxied(log)
    log.flush()
    assert len(_lines(stream)) == 2
    assert log.dropped == 3


def test_disabled_log_writes_nothing() -> None:
    stream = io.StringIO()
    log = AccessLog(stream, enabled=False)
    _proxied(log)
    log.log("rid", None, None, None, None, 400, None, None, "-", None, "bad_request")
    log.flush()
    assert stream.getvalue() == ""


def test_a_failed_write_counts_the_lines_as_dropped() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    _proxied(log)
    _proxied(log)
    stream.close()
    log.flush()
    assert log.dropped == 2


def test_a_file_gets_the_same_lines_as_bytes(tmp_path: Path) -> None:
    target = tmp_path / "access.log"
    log = AccessLog(path=str(target))
    _proxied(log)
    log.log("abc", "GET", '/a"b', "r", "u", 502, 1, 2, "127.0.0.1", "breaker_open", "x")
    log.close()
    first, second = (json.loads(line) for line in target.read_bytes().splitlines())
    assert (first["path"], first["duration_ms"], first["client"]) == (
        "/api/orders/7",
        1.234,
        "127.0.0.1",
    )
    assert (second["path"], second["fallback"], second["status"]) == ('/a"b', "breaker_open", 502)
