"""Leaks: errors never echo the request or show internals; credentials never reach the logs.

Every error the proxy generates is a small JSON body: it holds no marker sent in the path, headers
or body, no traceback, no upstream address. Access lines hold no header value but the request id,
so Authorization and Cookie values never reach them, nor the structlog output; a CR or LF in a
path or header cannot forge a log line. Last, the C-parser rule: `strangler serve` refuses to run
with aiohttp's pure-Python parser unless explicitly allowed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.adversarial.wire import (
    MARKER,
    Client,
    RecordingUpstream,
    RefusedPort,
    UpConn,
    UpRequest,
    config,
    exchange,
    split_responses,
)
from tests.harness import ProxyHandle, free_port

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
M = MARKER.encode()
SECRET = b"s3cr3t-" + M
CREDS = b"Authorization: Bearer " + SECRET + b"\r\nCookie: session=" + SECRET + b"\r\n"


def broken(req: UpRequest, conn: UpConn) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx")


ERRORS: list[tuple[str, str, bytes]] = [
    ("bad_target", "legacy", b"GET /" + M + b"/%2f HTTP/1.1\r\nHost: h\r\n" + CREDS + b"\r\n"),
    ("bad_header", "legacy", b"GET /p HTTP/1.1\r\nHost: h\r\nX-A: " + M + b"\x01\r\n\r\n"),
    ("bad_host", "legacy", b"GET /p HTTP/1.1\r\nHost: " + M + b"/x\r\n\r\n"),
    ("too_long", "legacy", b"GET /" + M * 200 + b" HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("too_many_bytes", "legacy", b"GET /p HTTP/1.1\r\nX-A: " + M * 3000 + b"\r\n\r\n"),
    (
        "body_too_large",
        "legacy",
        b"POST /"
        + M
        + b" HTTP/1.1\r\nHost: h\r\n"
        + CREDS
        + b"Content-Length: 99999999\r\n\r\n"
        + M,
    ),
    (
        "transfer_coding",
        "legacy",
        b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + M + b"\r\n\r\n",
    ),
    (
        "framing",
        "legacy",
        b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: " + M + b"\r\n\r\n",
    ),
    ("connect", "legacy", b"CONNECT " + M + b":443 HTTP/1.1\r\nHost: " + M + b"\r\n\r\n"),
    ("parse_error", "legacy", b"GET /" + M + b" HTTP/1.1\r\nHost: h\r\n" + M + b"\r\n\r\n"),
    ("refused_upstream", "refused", b"GET /" + M + b" HTTP/1.1\r\nHost: h\r\n" + CREDS + b"\r\n"),
    (
        "broken_upstream",
        "broken",
        b"POST /"
        + M
        + b" HTTP/1.1\r\nHost: h\r\n"
        + CREDS
        + b"Content-Length: 22\r\n\r\n"
        + M
        + b"-body-",
    ),
]


@pytest.mark.parametrize(
    ("upstream_kind", "request_bytes"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
async def test_proxy_errors_never_echo_the_request_or_internals(
    proxy_factory: ProxyFactory,
    upstream: RecordingUpstream,
    upstream_kind: str,
    request_bytes: bytes,
) -> None:
    port = upstream.port
    bad: RecordingUpstream | None = None
    if upstream_kind == "refused":
        port = RefusedPort().port
    elif upstream_kind == "broken":
        bad = await RecordingUpstream(broken).start()
        port = bad.port
    try:
        proxy = await proxy_factory(
            config(legacy=port, limits={"max_request_line": "1KiB", "max_header_bytes": "8KiB"})
        )
        with capture_logs() as logs:
            raw, _ = await exchange(proxy.port, request_bytes, wait=2.0)
            await asyncio.sleep(0.02)
        responses, _ = split_responses(raw)
        assert responses and responses[0].status >= 400
        assert M not in raw
        assert b"Traceback" not in raw and b'File "' not in raw
        assert b"127.0.0.1:%d" % port not in raw and b"%d" % port not in raw
        assert json.loads(responses[0].body)["status"] == responses[0].status
        lines = proxy.access_lines()
        assert lines
        assert SECRET.decode() not in json.dumps(lines)
        assert SECRET.decode() not in repr(logs)
    finally:
        if bad is not None:
            await bad.stop()


async def test_credentials_never_reach_access_or_structured_logs(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    with capture_logs() as logs:
        client = await Client.open(proxy.port)
        await client.send(
            b"GET /ok HTTP/1.1\r\nHost: h\r\n"
            + CREDS
            + b"\r\n"
            + b"GET /ok?token=x HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic "
            + SECRET
            + b"\r\nX-Api-Key: "
            + SECRET
            + b"\r\n\r\n"
        )
        responses = await client.read_responses(2)
        client.close()
    assert [r.status for r in responses] == [200, 200]
    # The upstream gets the end-to-end credentials, as a proxy must (not Proxy-Authorization).
    assert upstream.requests[0].header("authorization") == "Bearer " + SECRET.decode()
    assert "proxy-authorization" not in upstream.requests[1].names
    text = json.dumps(proxy.access_lines()) + repr(logs) + capsys.readouterr().out
    assert SECRET.decode() not in text


FORGERIES: list[tuple[str, bytes]] = [
    (
        "encoded_crlf_path",
        b"GET /a%0d%0a%7b%22event%22:%22forged%22%7d HTTP/1.1\r\nHost: h\r\n\r\n",
    ),
    ("quote_brace_path", b'GET /a"},{"event":"forged HTTP/1.1\r\nHost: h\r\n\r\n'),
    ("unicode_line_separator", b"GET /a%e2%80%a8%7b%22event%22:1%7d HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("crlf_request_id", b"GET /p HTTP/1.1\r\nHost: h\r\nX-Request-ID: a\rb\r\n\r\n"),
    ("json_request_id", b'GET /p HTTP/1.1\r\nHost: h\r\nX-Request-ID: a","event":"x\r\n\r\n'),
    ("crlf_header", b'GET /p HTTP/1.1\r\nHost: h\r\nUser-Agent: a\r\r\n{"event":1}\r\n\r\n'),
]


@pytest.mark.parametrize("request_bytes", [c[1] for c in FORGERIES], ids=[c[0] for c in FORGERIES])
async def test_log_lines_cannot_be_forged(
    proxy_factory: ProxyFactory, upstream: RecordingUpstream, request_bytes: bytes
) -> None:
    proxy = await proxy_factory(config(legacy=upstream.port))
    raw, _ = await exchange(proxy.port, request_bytes, wait=1.0)
    assert raw.startswith(b"HTTP/1.1 ")
    proxy.proxy.access.flush()
    text = proxy.access.getvalue()
    lines = [line for line in text.split("\n") if line]
    assert len(lines) == 1, text
    record = json.loads(lines[0])
    assert record["event"] == "access"
    assert "forged" not in record.get("request_id", "")


# ---- the C-parser rule ---------------------------------------------------------------------
def serve_config(tmp_path: Path) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(
        f"version: 1\nlisten: {{host: 127.0.0.1, port: {free_port()}}}\n"
        f"admin: {{host: 127.0.0.1, port: {free_port()}}}\n"
        f'upstreams:\n  legacy: {{url: "http://127.0.0.1:{free_port()}", role: legacy}}\n'
        "default: {upstream: legacy}\n"
    )
    return path


async def run_serve(tmp_path: Path, *flags: str) -> tuple[int | None, str]:
    env = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.cli",
        "serve",
        "--config",
        str(serve_config(tmp_path)),
        *flags,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = b""
    try:
        while b"strangler.started" not in output:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            if not line:
                break
            output += line
    finally:
        if proc.returncode is None and b"strangler.started" in output:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
    return (None if b"strangler.started" in output else code), output.decode(errors="replace")


async def test_pure_python_parser_refused_without_the_flag(tmp_path: Path) -> None:
    code, output = await run_serve(tmp_path)
    assert code is not None and code != 0
    assert "AIOHTTP_NO_EXTENSIONS" in output and "--allow-pure-python-parser" in output
    assert "Traceback" not in output


async def test_pure_python_parser_allowed_with_the_flag(tmp_path: Path) -> None:
    code, output = await run_serve(tmp_path, "--allow-pure-python-parser")
    assert code is None, output
