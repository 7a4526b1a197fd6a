"""Soak (~10 s, loopback only): good, bad and slow clients at once against a flaky upstream.

The orders service resets every tenth connection's request before answering; the orders route is
migrated with the monolith as fallback, so every good request is still served (200, by orders or
by the fallback). Bad clients send framing the proxy refuses (400), slow clients stall in their
head (408). At the end: the process's RSS (it hosts the proxy) stayed flat after warm-up, the
proxy's error and fallback counters equal what was injected, and every good request got a 200.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

from tests.adversarial.wire import (
    Client,
    RecordingUpstream,
    UpConn,
    UpRequest,
    config,
    exchange,
    ok,
    split_responses,
)
from tests.harness import ProxyHandle

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]
DURATION = 9.0
GOOD_CLIENTS = 8
BAD_EVERY = 0.05
SLOW_EVERY = 0.25


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class Flaky:
    """Resets before answering on every tenth request it receives."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.resets = 0

    def __call__(self, req: UpRequest, conn: UpConn) -> None:
        if next(self.counter) % 10 == 0:
            self.resets += 1
            conn.reset()
        else:
            ok(req, conn)


async def test_soak_mixed_clients_against_a_flaky_upstream(proxy_factory: ProxyFactory) -> None:
    flaky = Flaky()
    orders = await RecordingUpstream(flaky, record=False).start()
    legacy = await RecordingUpstream(record=False).start()
    route = {"stage": "migrated", "fallback": "{upstream: legacy}"}
    # The harness keeps access lines in memory: off here, so RSS measures the proxy alone.
    quiet = "logging: {access: {enabled: false}}\n"
    proxy = await proxy_factory(
        config(legacy=legacy.port, orders=orders.port, route=route, extra=quiet)
    )
    loop = asyncio.get_running_loop()
    end = loop.time() + DURATION
    good = {"sent": 0, "ok": 0, "bad_status": 0}
    injected = {"bad": 0, "slow": 0}
    samples: list[int] = []

    async def good_client(n: int) -> None:
        client = await Client.open(proxy.port)
        try:
            for i in itertools.count():
                if loop.time() >= end:
                    return
                path = b"/api/orders/%d-%d" % (n, i) if i % 2 else b"/p/%d-%d" % (n, i)
                good["sent"] += 1
                await client.send(b"GET %s HTTP/1.1\r\nHost: shop\r\n\r\n" % path)
                (resp,) = await client.read_responses(1, wait=5.0)
                if resp.status == 200 and path in resp.body:
                    good["ok"] += 1
                else:
                    good["bad_status"] += 1
        finally:
            client.close()

    async def bad_clients() -> None:
        while loop.time() < end:
            raw, _ = await exchange(
                proxy.port,
                b"POST /api/orders/1 HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                wait=2.0,
            )
            injected["bad"] += 1
            assert [r.status for r in split_responses(raw)[0]] == [400]
            await asyncio.sleep(BAD_EVERY)

    async def one_slow_client() -> None:
        client = await Client.open(proxy.port)
        await client.send(b"GET /api/orders/slow HTTP/1.1\r\nHost: shop\r\n")
        raw, closed = await client.read_all(3.0)
        client.close()
        assert closed and [r.status for r in split_responses(raw)[0]] == [408]

    async def slow_clients() -> None:
        pending = []
        while loop.time() < end - 1.0:
            pending.append(loop.create_task(one_slow_client()))
            injected["slow"] += 1
            await asyncio.sleep(SLOW_EVERY)
        await asyncio.gather(*pending)

    async def sampler() -> None:
        while loop.time() < end:
            samples.append(rss_bytes())
            await asyncio.sleep(0.25)

    try:
        await asyncio.gather(
            *(good_client(n) for n in range(GOOD_CLIENTS)),
            bad_clients(),
            slow_clients(),
            sampler(),
        )
    finally:
        await orders.stop()
        await legacy.stop()

    assert good["sent"] > 500
    assert orders.served + legacy.served == good["sent"] + flaky.resets
    assert good["bad_status"] == 0 and good["ok"] == good["sent"]
    assert flaky.resets > 10
    assert (
        proxy.metric(
            "strangler_upstream_errors_total", route="orders", upstream="orders", kind="reset"
        )
        == flaky.resets
    )
    assert (
        proxy.metric(
            "strangler_fallbacks_total",
            route="orders",
            from_upstream="orders",
            to_upstream="legacy",
            reason="reset",
        )
        == flaky.resets
    )
    refused = sum(
        proxy.metric("strangler_client_errors_total", code="400", reason=reason)
        for reason in ("framing", "bad_request")
    )
    assert refused == injected["bad"]
    assert (
        proxy.metric("strangler_client_errors_total", code="408", reason="request_timeout")
        == injected["slow"]
    )
    warm = samples[len(samples) // 4]
    assert max(samples[len(samples) // 4 :]) - warm < 20 * 1024 * 1024, samples
