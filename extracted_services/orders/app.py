"""Wiring of the orders service: its own database, one client session, the saga placement.

The ``aiohttp.ClientSession`` to the upstreams opens at startup and closes at
cleanup; its total timeout bounds each saga step, so a hung upstream turns into
a failed step (and compensation), never a hung order.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from extracted_services.faults import FaultInjector, install_faults
from extracted_services.orders.api import PLACEMENT_KEY, routes
from extracted_services.orders.clients import InventoryClient, MonolithClient
from extracted_services.orders.placement import OrderPlacement
from extracted_services.orders.store import SCHEMA, OrderStore, no_seed
from legacy_monolith.envelope import SERVER_NAME_KEY, default_server_name, envelope_middleware
from legacy_monolith.health import add_health_routes
from legacy_monolith.sqlite import DATABASE_KEY, check_database, database_context

__all__ = ["SERVICE_NAME", "Upstreams", "create_app"]

SERVICE_NAME = "orders-service"


@dataclass(frozen=True, slots=True)
class Upstreams:
    inventory_url: str = "http://127.0.0.1:8002"
    payments_url: str = "http://127.0.0.1:8001"
    monolith_url: str | None = None  # catalog, customers, shipping; defaults to payments_url
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")


def create_app(
    db_path: str,
    *,
    upstreams: Upstreams | None = None,
    server_name: str | None = None,
    fault_seed: int | None = None,
) -> web.Application:
    urls = upstreams or Upstreams()
    faults = FaultInjector(seed=fault_seed)
    app = web.Application(middlewares=[faults.middleware(), envelope_middleware])
    app[SERVER_NAME_KEY] = server_name or default_server_name(SERVICE_NAME)
    app.cleanup_ctx.append(database_context(db_path, SCHEMA, no_seed))
    app.cleanup_ctx.append(_placement_context(urls))
    install_faults(app, faults)
    add_health_routes(app, {"database": check_database})
    app.router.add_routes(routes)
    return app


def _placement_context(
    urls: Upstreams,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=urls.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app[PLACEMENT_KEY] = OrderPlacement(
                OrderStore(app[DATABASE_KEY]),
                InventoryClient(session, urls.inventory_url, "inventory"),
                MonolithClient(session, urls.payments_url, "payments"),
                MonolithClient(session, urls.monolith_url or urls.payments_url, "monolith"),
            )
            yield

    return lifespan
