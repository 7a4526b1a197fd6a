"""The demo stack: the sample apps and the proxy on loopback, driven through the proxy."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from strangler.demo import STAGES, Ports, Stack


def _offset() -> int:
    """A port offset at which all five demo ports are free right now."""
    for _ in range(50):
        offset = random.randrange(20_000, 40_000, 10)
        try:
            for base in (8080, 9901, 8001, 8002, 8003):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port offset found")


async def test_demo_stack_routes_to_each_upstream(tmp_path: Path) -> None:
    offset = _offset()
    ports = Ports(8080 + offset, 9901 + offset, 8001 + offset, 8002 + offset, 8003 + offset)
    stack = Stack(ports, tmp_path, "127.0.0.1")
    await stack.start()
    base = f"http://127.0.0.1:{ports.proxy}"
    try:
        async with aiohttp.ClientSession() as session:
            # Stage "legacy": inventory reads come from the monolith.
            async with session.get(base + "/api/inventory/SKU-1001") as resp:
                assert resp.status == 200
                assert resp.headers["X-Served-By"].startswith("legacy-monolith")
                assert (await resp.json())["item"]["sku"] == "SKU-1001"
            # Stage "migrated": the inventory service serves.
            await stack.apply(STAGES[4])
            async with session.get(base + "/api/inventory/SKU-1001") as resp:
                assert resp.status == 200
                assert resp.headers["X-Served-By"].startswith("inventory-service")
            # The orders service, forced with the tester override of the canary route.
            async with session.get(
                base + "/api/orders", headers={"X-Strangler-Upstream": "orders"}
            ) as resp:
                assert resp.status == 200
                assert resp.headers["X-Served-By"].startswith("orders-service")
            # The fault stage: the inventory service is down, the monolith answers as fallback.
            await stack.apply(STAGES[5])
            async with session.get(base + "/api/inventory/SKU-1002") as resp:
                assert resp.status == 200
                assert resp.headers["X-Served-By"].startswith("legacy-monolith")
                assert resp.headers["X-Strangler-Fallback"] in {"reset", "refused"}
    finally:
        await stack.stop()


async def test_demo_command_starts_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    offset = _offset()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.cli",
        "demo",
        "--no-traffic",
        "--port-offset",
        str(offset),
        "--data-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    banner = b""
    try:
        while b"Press Ctrl-C" not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line, banner.decode()
            banner += line
        assert f"http://127.0.0.1:{9901 + offset}/status".encode() in banner
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{8080 + offset}/api/products"
            async with session.get(url) as resp:
                assert resp.status == 200
                assert "products" in await resp.json()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
