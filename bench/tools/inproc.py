"""The data plane's per-request Python cost, without sockets.

A client connection and one pooled upstream connection per upstream run on fake transports: each
iteration feeds one request to the client side and one response to the upstream side, through the
real parser callbacks, routing, exchange, metrics and access log. `bench/tools/ir.sh` runs this
under callgrind to count instructions per request (deterministic, unlike wall time on a shared VM).

    python bench/tools/inproc.py CONFIG [p|x] [N] [PATH]    # p: print a cProfile table
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from prometheus_client import CollectorRegistry

from strangler.accesslog import AccessLog
from strangler.loader import load_config
from strangler.logs import get_logger
from strangler.metrics import Metrics
from strangler.runtime import DataPlane, build_snapshot
from strangler.server import ClientConnection
from strangler.upstream import UpstreamConnection

BODY = (
    b'{"id":12345,"name":"widget","price":1999,"currency":"EUR","stock":42,"tags":["a","b","c"],'
    b'"updated_at":"2026-11-27T00:00:00Z","description":"a fixed two hundred byte JSON body"}'
)
# The proxy flushes its access log every 5 ms: about 50 lines a batch at 10,000 requests/s.
FLUSH_EVERY = 50
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 00:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n"
    % len(BODY)
) + BODY


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, key: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if key == "peername" else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def run(config_path: str, n: int, profile: bool, path: bytes) -> None:
    request = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n"
    loop = asyncio.get_running_loop()
    config = load_config(config_path)
    metrics = Metrics(CollectorRegistry())
    snapshot = build_snapshot(config, None, metrics, lambda *args: None, None)
    # A file, as the proxy writes (bytes); /dev/null keeps the run's cost to the write calls.
    access = AccessLog(path="/dev/null", enabled=config.logging.access.enabled)
    access.bind_loop(loop)
    plane = DataPlane(loop, snapshot, metrics, access, get_logger())
    client = ClientConnection(plane)
    client_transport = FakeTransport()
    client.connection_made(client_transport)  # type: ignore[arg-type]
    conns = []
    for upstream in snapshot.upstreams.values():
        conn = UpstreamConnection(upstream.pool)
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        upstream.pool.release(conn)
        conns.append(conn)

    served = 0

    def one() -> None:
        nonlocal served
        client.data_received(request)
        for conn in conns:
            if conn.sink is not None:
                conn.data_received(RESPONSE)
        served += 1
        if served % FLUSH_EVERY == 0:
            access.flush()

    for _ in range(300):
        one()
    client_transport.out.clear()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for _ in range(n):
        one()
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - started
    if n:
        print(
            f"{config_path}: {elapsed / n * 1e6:.2f} us/request, {len(client_transport.out)} "
            "responses"
        )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main() -> None:
    config_path = sys.argv[1]
    profile = len(sys.argv) > 2 and sys.argv[2] == "p"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    path = sys.argv[4].encode() if len(sys.argv) > 4 else b"/api/orders/7"
    uvloop.install()
    asyncio.run(run(config_path, n, profile, path))


if __name__ == "__main__":
    main()
