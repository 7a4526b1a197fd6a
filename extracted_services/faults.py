"""Run-time fault injection for the sample apps: a middleware and ``/_faults`` admin routes.

``GET /_faults`` shows the active ``FaultConfig``; ``PUT /_faults`` replaces it
(keys left out take their defaults, unknown keys are a 400); ``DELETE /_faults``
restores the defaults. For each request whose path starts with ``path_prefix``:

1. ``down``: answer 503 ``service_down`` (or, with ``reset``, drop the TCP
   connection without an answer);
2. ``latency_ms``: sleep that long before handling;
3. ``error_rate``: with that probability answer ``error_status`` with
   ``{"error": "injected_fault"}`` instead of calling the handler.

``/_faults`` and ``/health/live`` are never faulted, so a test can always undo a
fault and an orchestrator never restarts a "down" service. The random source is
a ``random.Random`` seeded from the constructor or from ``"seed"`` in a PUT, so a
given seed yields the same pass/fail sequence every run. ``FaultConfig.parse``
and ``FaultInjector.decide`` are pure; only the middleware sleeps and writes.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "EXEMPT_PATHS",
    "FAULTS_KEY",
    "FaultAction",
    "FaultConfig",
    "FaultConfigError",
    "FaultInjector",
    "install_faults",
]

EXEMPT_PATHS = frozenset({"/_faults", "/health/live"})


class FaultConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class FaultConfig:
    error_rate: float = 0.0
    error_status: int = 500
    latency_ms: int = 0
    down: bool = False
    reset: bool = False
    path_prefix: str = "/"
    seed: int | None = None

    @classmethod
    def parse(cls, data: object) -> FaultConfig:
        """Validate a JSON object, collecting every problem before raising ``FaultConfigError``."""
        if not isinstance(data, dict):
            raise FaultConfigError(["fault config must be a JSON object"])
        known = [f.name for f in fields(cls)]
        problems = [
            f"unknown key '{key}' (known: {', '.join(known)})" for key in data if key not in known
        ]
        rate = data.get("error_rate", 0.0)
        if not _is_number(rate) or not 0.0 <= rate <= 1.0:
            problems.append("error_rate must be a number from 0.0 to 1.0")
        status = data.get("error_status", 500)
        if not _is_int(status) or not 400 <= status <= 599:
            problems.append("error_status must be an integer from 400 to 599")
        latency = data.get("latency_ms", 0)
        if not _is_int(latency) or not 0 <= latency <= 60_000:
            problems.append("latency_ms must be an integer from 0 to 60000")
        for flag in ("down", "reset"):
            if not isinstance(data.get(flag, False), bool):
                problems.append(f"{flag} must be true or false")
        prefix = data.get("path_prefix", "/")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            problems.append("path_prefix must be a string starting with '/'")
        seed = data.get("seed")
        if seed is not None and not _is_int(seed):
            problems.append("seed must be an integer or null")
        if problems:
            raise FaultConfigError(problems)
        return cls(**{key: data[key] for key in known if key in data})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class FaultAction(enum.Enum):
    PASS = "pass"
    ERROR = "error"
    DOWN = "down"
    RESET = "reset"


class FaultInjector:
    """Holds the active config and the seeded random source."""

    def __init__(self, config: FaultConfig | None = None, *, seed: int | None = None) -> None:
        self.config = config or FaultConfig()
        self._random = random.Random(seed)

    def apply(self, config: FaultConfig) -> None:
        self.config = config
        if config.seed is not None:
            self._random.seed(config.seed)

    def decide(self, path: str) -> tuple[FaultAction, float]:
        """The action for a request to ``path`` and the delay (seconds) to add before it."""
        config = self.config
        if path in EXEMPT_PATHS or not path.startswith(config.path_prefix):
            return FaultAction.PASS, 0.0
        if config.down:
            return (FaultAction.RESET if config.reset else FaultAction.DOWN), 0.0
        delay = config.latency_ms / 1000
        # Draw only when a rate is set, so a seed's sequence counts faulted requests only.
        if config.error_rate > 0 and self._random.random() < config.error_rate:
            return FaultAction.ERROR, delay
        return FaultAction.PASS, delay

    def middleware(self) -> Middleware:
        @web.middleware
        async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
            action, delay = self.decide(request.path)
            if action is FaultAction.RESET:
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError  # nothing can be written on an aborted transport
            if action is FaultAction.DOWN:
                down = {"error": "service_down", "message": "fault injection: service is down"}
                return web.json_response(down, status=503)
            if delay:
                await asyncio.sleep(delay)
            if action is FaultAction.ERROR:
                status = self.config.error_status
                injected = {"error": "injected_fault", "message": "fault injection"}
                return web.json_response({**injected, "status": status}, status=status)
            return await handler(request)

        return inject_faults


FAULTS_KEY = web.AppKey("faults", FaultInjector)


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS_KEY].config.to_json())


async def _put_faults(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except ValueError:
        return web.json_response(
            {"error": "invalid_fault_config", "problems": ["body is not valid JSON"]}, status=400
        )
    try:
        config = FaultConfig.parse(data)
    except FaultConfigError as exc:
        return web.json_response(
            {"error": "invalid_fault_config", "problems": exc.problems}, status=400
        )
    request.app[FAULTS_KEY].apply(config)
    return web.json_response(config.to_json())


async def _delete_faults(request: web.Request) -> web.Response:
    request.app[FAULTS_KEY].apply(FaultConfig())
    return web.json_response(FaultConfig().to_json())


def install_faults(app: web.Application, injector: FaultInjector) -> None:
    """Register the admin routes; pass ``injector.middleware()`` first in the app's middlewares."""
    app[FAULTS_KEY] = injector
    app.router.add_get("/_faults", _get_faults)
    app.router.add_put("/_faults", _put_faults)
    app.router.add_delete("/_faults", _delete_faults)
