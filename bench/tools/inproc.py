"""Per-request Python cost of the data plane, without sockets: fake transports, one loop."""

import asyncio
import cProfile
import io
import pstats
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from prometheus_client import CollectorRegistry

from strangler.accesslog import AccessLog
from strangler.loader import load_config
from strangler.logs import get_logger
from strangler.metrics import Metrics
from strangler.runtime import DataPlane, build_snapshot
from strangler.server import ClientConnection
from strangler.upstream import UpstreamConnection


class FakeTransport:
    def __init__(self):
        self.out = []
        self.closed = False

    def write(self, d):
        self.out.append(d)

    def get_extra_info(self, k, default=None):
        return ("127.0.0.1", 5555) if k == "peername" else None

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True

    def is_closing(self):
        return self.closed


REQ = (
    b"GET "
    + (sys.argv[4].encode() if len(sys.argv) > 4 else b"/api/orders/7")
    + b" HTTP/1.1\r\nHost: 127.0.0.1:18911\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
)
BODY = b'{"id":12345,"name":"widget","price":1999,"currency":"EUR","stock":42,"tags":["a","b","c"],"updated_at":"2026-11-27T00:00:00Z","description":"a fixed two hundred byte JSON body for benchmarks ok"}'
RESP = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 00:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n"
    % len(BODY)
    + BODY
)


async def main(cfg, n, profile):
    loop = asyncio.get_running_loop()
    config = load_config(cfg)
    metrics = Metrics(CollectorRegistry())
    snap = build_snapshot(config, None, metrics, lambda *a: None, None)
    access = AccessLog(io.StringIO(), enabled=config.logging.access.enabled)
    access.bind_loop(loop)
    plane = DataPlane(loop, snap, metrics, access, get_logger())
    client = ClientConnection(plane)
    ct = FakeTransport()
    client.connection_made(ct)
    # one pooled upstream connection per upstream
    for up in snap.upstreams.values():
        conn = UpstreamConnection(up.pool)
        conn.connection_made(FakeTransport())
        up.pool.release(conn)
    conns = [up.pool._idle[0] for up in snap.upstreams.values()]

    def one():
        client.data_received(REQ)
        for c in conns:
            if c.sink is not None:
                c.data_received(RESP)

    for _ in range(300):
        one()
    ct.out.clear()
    pr = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if pr:
        pr.enable()
    for _ in range(n):
        one()
    if pr:
        pr.disable()
    dt = time.perf_counter() - t0
    access.flush()
    print(f"{cfg}: {dt / n * 1e6:.2f} us/request python (n={n}), responses={len(ct.out)}")
    if pr:
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


cfg = sys.argv[1]
prof = len(sys.argv) > 2 and sys.argv[2] == "p"
N = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
import uvloop

uvloop.install()
asyncio.run(main(cfg, N, prof))
