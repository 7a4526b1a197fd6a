"""The ``python -m`` entry points: flags, and the three apps started as real processes."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from extracted_services.inventory.__main__ import build_parser as inventory_parser
from extracted_services.orders.__main__ import build_parser as orders_parser
from legacy_monolith.__main__ import build_parser as monolith_parser


def test_default_ports() -> None:
    assert monolith_parser().parse_args([]).port == 8001
    assert inventory_parser().parse_args([]).port == 8002
    args = orders_parser().parse_args([])
    assert (args.port, args.inventory_url, args.payments_url, args.monolith_url) == (
        8003,
        "http://127.0.0.1:8002",
        "http://127.0.0.1:8001",
        None,
    )


def test_orders_flags() -> None:
    args = orders_parser().parse_args(
        ["--inventory-url", "http://i", "--payments-url", "http://p", "--upstream-timeout", "0.5"]
    )
    assert (args.inventory_url, args.payments_url, args.upstream_timeout) == (
        "http://i",
        "http://p",
        0.5,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    ports = {name: _free_port() for name in ("monolith", "inventory", "orders")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    commands = {
        "monolith": ["legacy_monolith"],
        "inventory": ["extracted_services.inventory"],
        "orders": [
            "extracted_services.orders",
            "--inventory-url",
            urls["inventory"],
            "--payments-url",
            urls["monolith"],
        ],
    }
    started = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *command,
            "--port",
            str(ports[name]),
            "--db",
            str(tmp_path / f"{name}.sqlite3"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for name, command in commands.items()
    ]
    try:
        yield urls
    finally:
        for process in started:
            process.terminate()
        for process in started:
            await process.wait()


async def _wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):
        try:
            async with session.get(url + "/health/ready") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never became ready")


async def test_processes_serve_an_order_end_to_end(processes: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as session:
        for url in processes.values():
            await _wait_ready(session, url)
        order = {"customer_id": "CUST-0001", "items": [{"sku": "SKU-1004", "qty": 1}]}
        async with session.post(processes["orders"] + "/api/orders", json=order) as resp:
            assert resp.status == 201
            assert (await resp.json())["order"]["state"] == "placed"
        async with session.get(processes["inventory"] + "/api/inventory/SKU-1004") as resp:
            assert (await resp.json())["item"]["available"] == 24
