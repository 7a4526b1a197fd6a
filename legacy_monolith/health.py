"""Liveness and readiness routes shared by the sample apps.

``/health/live`` answers 200 while the process serves HTTP at all; it never
touches a dependency, so fault injection and a broken database leave it alone.
``/health/ready`` runs the app's own checks (its database only: a service is
ready when it can serve, not when every upstream is up) and answers 503 when any
check fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

from legacy_monolith.envelope import json_response

__all__ = ["ReadinessCheck", "add_health_routes"]

ReadinessCheck = Callable[[web.Application], None]
"""Raises when the dependency it checks is unusable."""


def add_health_routes(app: web.Application, checks: Mapping[str, ReadinessCheck]) -> None:
    async def live(request: web.Request) -> web.Response:
        return json_response(request, {"status": "live"})

    async def ready(request: web.Request) -> web.Response:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                check(request.app)
            except Exception as exc:
                results[name] = f"failed: {exc}"
            else:
                results[name] = "ok"
        healthy = all(result == "ok" for result in results.values())
        body = {"status": "ready" if healthy else "not_ready", "checks": results}
        return json_response(request, body, status=200 if healthy else 503)

    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
