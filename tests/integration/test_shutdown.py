"""Graceful shutdown of a real `strangler serve` process (issue 8).

On SIGTERM or SIGINT the process turns not-ready, closes its listener, closes idle keep-alive
connections, lets requests in flight finish (each answered with `Connection: close`), and exits 0;
`shutdown.drain_timeout` bounds the wait. The CLI runs on uvloop when it is installed; each case
also runs on the standard asyncio loop (uvloop hidden from the child).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.harness import RawUpstream, free_port, parse_response

LOOPS = {
    "uvloop": [sys.executable, "-m", "strangler.cli"],
    "asyncio": [
        sys.executable,
        "-c",
        "import sys; sys.modules['uvloop'] = None\n"
        "from strangler.cli import main; sys.exit(main())",
    ],
}
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


async def _slow_behaviour(
    upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer each request after `?sleep=<seconds>`; give up early if the proxy hangs up."""
    while True:
        head = await upstream.read_head(reader)
        target = head.split(b" ", 2)[1]
        delay = float(target.partition(b"sleep=")[2] or b"0")
        if delay:
            with contextlib.suppress(TimeoutError):
                if not await asyncio.wait_for(reader.read(1), delay):
                    return  # the proxy closed the connection
        body = b'{"upstream": "legacy"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()


@pytest.fixture
async def slow_upstream() -> AsyncIterator[RawUpstream]:
    upstream = await RawUpstream(_slow_behaviour).start()
    yield upstream
    await upstream.stop()


@dataclass
class Serving:
    proc: asyncio.subprocess.Process
    port: int
    admin_port: int
    log: Path

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc.returncode is None, self.log.read_text()
                try:
                    async with session.get(self.admin("/health/ready")) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        pytest.fail("strangler serve did not become ready within 10 s")

    def admin(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"


Serve = Callable[[str, str], Awaitable[Serving]]


@pytest.fixture
async def serve(tmp_path: Path, slow_upstream: RawUpstream) -> AsyncIterator[Serve]:
    started: list[Serving] = []

    async def start(loop: str, drain_timeout: str) -> Serving:
        if loop == "uvloop":  # the CLI picks uvloop up when it is installed
            assert importlib.util.find_spec("uvloop") is not None
        port, admin_port = free_port(), free_port()
        path = tmp_path / f"serve-{port}.yaml"
        path.write_text(
            f"version: 1\n"
            f"listen: {{host: 127.0.0.1, port: {port}}}\n"
            f"admin: {{host: 127.0.0.1, port: {admin_port}}}\n"
            f"shutdown: {{drain_timeout: {drain_timeout}}}\n"
            f"logging: {{access: {{enabled: false}}}}\n"
            f"upstreams:\n"
            f"  legacy: {{url: 'http://127.0.0.1:{slow_upstream.port}', role: legacy}}\n"
            f"routes:\n"
            f"  - {{name: slow, match: {{path_prefix: /slow}}, upstream: legacy}}\n"
            f"default: {{upstream: legacy}}\n"
        )
        log = tmp_path / f"serve-{port}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *LOOPS[loop], "serve", "--config", str(path),
                stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        serving = Serving(proc, port, admin_port, log)
        started.append(serving)
        await serving.wait_ready()
        return serving

    yield start
    for serving in started:
        if serving.proc.returncode is None:
            serving.proc.kill()
            await serving.proc.wait()


async def _request(port: int, target: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: shop\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """Exactly one response with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    _, headers, _ = parse_response(head)
    return head + await reader.readexactly(int(headers["content-length"]))


async def _read_until_close(reader: asyncio.StreamReader, within: float) -> bytes:
    chunks = []
    while chunk := await asyncio.wait_for(reader.read(65536), within):
        chunks.append(chunk)
    return b"".join(chunks)


async def _wait_heads(upstream: RawUpstream, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(upstream.received) < count:
        assert time.monotonic() < deadline, f"{len(upstream.received)} of {count} requests arrived"
        await asyncio.sleep(0.01)


async def _ready_status(serving: Serving) -> int | None:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(serving.admin("/health/ready")) as resp,
        ):
            return resp.status
    except aiohttp.ClientConnectionError:
        return None  # the admin listener is already gone


@pytest.mark.parametrize("loop", list(LOOPS), ids=list(LOOPS))
@pytest.mark.parametrize("sig", list(SIGNALS), ids=list(SIGNALS))
async def test_signal_drains_in_flight_requests_and_exits_zero(
    serve: Serve, slow_upstream: RawUpstream, loop: str, sig: str
) -> None:
    serving: Serving = await serve(loop, "10s")
    # An idle keep-alive connection: one quick exchange, then it just stays open.
    idle_reader, idle_writer = await _request(serving.port, "/fast")
    status, _, _ = parse_response(await asyncio.wait_for(_read_response(idle_reader), 5))
    assert status == 200
    slow = [await _request(serving.port, "/slow?sleep=1") for _ in range(3)]
    await _wait_heads(slow_upstream, 4)

    serving.proc.send_signal(SIGNALS[sig])
    signalled = time.monotonic()

    # The idle connection is closed at once; readiness turns false while the drain runs.
    assert await _read_until_close(idle_reader, 2) == b""
    assert await _ready_status(serving) == 503
    assert time.monotonic() - signalled < 0.9, "readiness check came too late to see the drain"
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", serving.port)
        writer.close()

    for reader, writer in slow:
        raw = await _read_until_close(reader, 5)
        status, headers, body = parse_response(raw)
        assert (status, body) == (200, b'{"upstream": "legacy"}')
        assert headers.get("connection") == "close"
        writer.close()
    idle_writer.close()
    assert await asyncio.wait_for(serving.proc.wait(), 5) == 0
    log = serving.log.read_text()
    assert "strangler.stopped" in log and "Traceback" not in log


@pytest.mark.parametrize("loop", list(LOOPS), ids=list(LOOPS))
async def test_drain_timeout_bounds_the_wait(
    serve: Serve, slow_upstream: RawUpstream, loop: str
) -> None:
    serving: Serving = await serve(loop, "500ms")
    reader, writer = await _request(serving.port, "/slow?sleep=5")
    await _wait_heads(slow_upstream, 1)
    serving.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert await asyncio.wait_for(serving.proc.wait(), 5) == 0
    assert time.monotonic() - signalled < 1.5
    # The request still in flight was cut off: no response reached the client.
    assert await _read_until_close(reader, 2) == b""
    writer.close()
