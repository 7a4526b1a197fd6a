"""Fixtures: the monolith and the extracted services on real loopback ports.

Each test gets fresh SQLite files under ``tmp_path``, so every app starts from
the seed. ``stack`` wires the orders service to the real inventory service and
the real monolith, as in production.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from extracted_services.inventory.app import create_app as create_inventory
from extracted_services.orders.app import Upstreams
from extracted_services.orders.app import create_app as create_orders
from legacy_monolith.app import create_app as create_monolith

from .calls import Client, base_url

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
ClientFactory = Callable[[TestServer], Awaitable[Client]]


@pytest.fixture
async def monolith_server(aiohttp_server: ServerFactory, tmp_path: Path) -> TestServer:
    app = create_monolith(str(tmp_path / "monolith.sqlite3"), server_name="monolith-test")
    return await aiohttp_server(app)


@pytest.fixture
async def monolith(aiohttp_client: ClientFactory, monolith_server: TestServer) -> Client:
    return await aiohttp_client(monolith_server)


@pytest.fixture
async def inventory_server(aiohttp_server: ServerFactory, tmp_path: Path) -> TestServer:
    app = create_inventory(str(tmp_path / "inventory.sqlite3"), server_name="inventory-test")
    return await aiohttp_server(app)


@pytest.fixture
async def inventory(aiohttp_client: ClientFactory, inventory_server: TestServer) -> Client:
    return await aiohttp_client(inventory_server)


@dataclass
class Stack:
    monolith: Client
    inventory: Client
    orders: Client


@pytest.fixture
async def stack(
    aiohttp_server: ServerFactory,
    aiohttp_client: ClientFactory,
    monolith_server: TestServer,
    inventory_server: TestServer,
    tmp_path: Path,
) -> Stack:
    upstreams = Upstreams(
        inventory_url=base_url(inventory_server),
        payments_url=base_url(monolith_server),
        timeout_s=2.0,
    )
    app = create_orders(str(tmp_path / "orders.sqlite3"), upstreams=upstreams)
    orders_server = await aiohttp_server(app)
    return Stack(
        monolith=await aiohttp_client(monolith_server),
        inventory=await aiohttp_client(inventory_server),
        orders=await aiohttp_client(orders_server),
    )
