"""Several proxy processes: `serve --workers 2` (SO_REUSEPORT) and two replicas with one config.

Real `strangler serve` processes on loopback ports, real upstreams, real HTTP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.harness import free_port, start_app


def _app(name: str) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"upstream": name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


async def _serve(config: Path, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.cli",
        "serve",
        "--config",
        str(config),
        "--log-level",
        "warning",
        *extra,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _wait_ready(admin_port: int, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{admin_port}/health/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "proxy did not become ready"
            await asyncio.sleep(0.1)


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()


def _config(port: int, admin: int, legacy: int, extracted: int) -> str:
    return f"""
version: 1
listen: {{host: 127.0.0.1, port: {port}}}
admin: {{host: 127.0.0.1, port: {admin}}}
logging: {{access: {{enabled: false}}}}
upstreams:
  legacy: {{url: "http://127.0.0.1:{legacy}", role: legacy}}
  orders: {{url: "http://127.0.0.1:{extracted}", role: extracted}}
routes:
  - name: orders
    stage: canary
    match: {{path_prefix: /api/orders}}
    upstream: legacy
    split:
      targets:
        - {{upstream: orders, weight: 30}}
        - {{upstream: legacy, weight: 70}}
      sticky: {{header: X-User-Id}}
default: {{upstream: legacy}}
"""


async def test_two_replicas_assign_each_user_to_the_same_side(tmp_path: Path) -> None:
    legacy_runner, legacy = await start_app(_app("legacy"))
    orders_runner, orders = await start_app(_app("orders"))
    ports = [(free_port(), free_port()) for _ in range(2)]
    procs = []
    try:
        for i, (port, admin) in enumerate(ports):
            path = tmp_path / f"replica-{i}.yaml"
            path.write_text(_config(port, admin, legacy, orders))
            procs.append(await _serve(path))
        for _, admin in ports:
            await _wait_ready(admin)
        sides: list[dict[str, str]] = [{}, {}]
        async with aiohttp.ClientSession() as session:
            for user in range(300):
                for i, (port, _) in enumerate(ports):
                    url = f"http://127.0.0.1:{port}/api/orders/{user}"
                    async with session.get(url, headers={"X-User-Id": f"user-{user}"}) as r:
                        assert r.status == 200
                        sides[i][f"user-{user}"] = (await r.json())["upstream"]
        assert sides[0] == sides[1]
        extracted = sum(1 for side in sides[0].values() if side == "orders")
        assert 60 <= extracted <= 120  # 30% of 300, loosely
    finally:
        for proc in procs:
            await _stop(proc)
        await legacy_runner.cleanup()
        await orders_runner.cleanup()


async def test_workers_share_the_port_and_metrics_add_up(tmp_path: Path) -> None:
    legacy_runner, legacy = await start_app(_app("legacy"))
    orders_runner, orders = await start_app(_app("orders"))
    port, admin = free_port(), free_port()
    path = tmp_path / "workers.yaml"
    path.write_text(_config(port, admin, legacy, orders))
    proc = await _serve(path, "--workers", "2")
    try:
        await _wait_ready(admin)
        await asyncio.sleep(0.5)  # let the second worker bind too
        statuses: dict[int, int] = {}
        for _ in range(200):
            # A fresh connection each time, so the kernel spreads them over both workers.
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/plain") as r,
            ):
                statuses[r.status] = statuses.get(r.status, 0) + 1
        assert statuses == {200: 200}
        # Each worker flushes its batched counts at least once a second: poll for up to 3 s.
        totals: list[float] = []
        for _ in range(30):
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{admin}/metrics") as r,
            ):
                text = await r.text()
            totals = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("strangler_requests_total{") and 'route="default"' in line
            ]
            if sum(totals) == 200.0:
                break
            await asyncio.sleep(0.1)
        assert sum(totals) == 200.0
        # Breaker-less config, but every worker reports its own process in multiprocess mode.
        assert "strangler_build_info" in text
        workers = await asyncio.create_subprocess_exec(
            "pgrep", "-f", "--", f"--config {path} --reuse-port", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await workers.communicate()
        assert len(out.split()) == 2
    finally:
        assert await _stop(proc) == 0
        await legacy_runner.cleanup()
        await orders_runner.cleanup()
    # No orphaned worker is left behind.
    check = await asyncio.create_subprocess_exec(
        "pgrep", "-f", "--", f"--config {path} --reuse-port", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await check.communicate()
    assert out.split() == []
