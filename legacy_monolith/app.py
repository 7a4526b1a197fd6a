"""Wiring of the legacy monolith: one aiohttp application over one SQLite database.

Middleware order, outermost first: fault injection (so an injected fault looks
like a real outage, with no envelope), then the envelope (request id, JSON
errors). The database opens at startup and is created and seeded on first use.
"""

from __future__ import annotations

from aiohttp import web

from extracted_services.faults import FaultInjector, install_faults
from legacy_monolith.api import routes
from legacy_monolith.envelope import SERVER_NAME_KEY, default_server_name, envelope_middleware
from legacy_monolith.health import add_health_routes
from legacy_monolith.schema import SCHEMA, seed_database
from legacy_monolith.sqlite import check_database, database_context

__all__ = ["SERVICE_NAME", "create_app"]

SERVICE_NAME = "legacy-monolith"


def create_app(
    db_path: str, *, server_name: str | None = None, fault_seed: int | None = None
) -> web.Application:
    faults = FaultInjector(seed=fault_seed)
    app = web.Application(middlewares=[faults.middleware(), envelope_middleware])
    app[SERVER_NAME_KEY] = server_name or default_server_name(SERVICE_NAME)
    app.cleanup_ctx.append(database_context(db_path, SCHEMA, seed_database))
    install_faults(app, faults)
    add_health_routes(app, {"database": check_database})
    app.router.add_routes(routes)
    return app
