"""Fault injection: the pure config and decision, then the middleware on every sample app."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from extracted_services.faults import FaultAction, FaultConfig, FaultConfigError, FaultInjector
from extracted_services.inventory.app import create_app as create_inventory
from extracted_services.orders.app import create_app as create_orders
from legacy_monolith.app import create_app as create_monolith

from .calls import Client, json_of, set_faults

AppFactory = Callable[[str], web.Application]
APPS: dict[str, tuple[AppFactory, str]] = {
    "monolith": (create_monolith, "/api/products"),
    "inventory": (create_inventory, "/api/inventory"),
    "orders": (create_orders, "/api/orders"),
}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"error_rate": 1.5}, "error_rate must be a number from 0.0 to 1.0"),
        ({"error_rate": True}, "error_rate must be a number from 0.0 to 1.0"),
        ({"error_status": 200}, "error_status must be an integer from 400 to 599"),
        ({"latency_ms": -1}, "latency_ms must be an integer from 0 to 60000"),
        ({"down": "yes"}, "down must be true or false"),
        ({"path_prefix": "api"}, "path_prefix must be a string starting with '/'"),
        ({"seed": 1.5}, "seed must be an integer or null"),
        ({"eror_rate": 1}, "unknown key 'eror_rate' (known: error_rate, error_status,"),
        ([], "fault config must be a JSON object"),
    ],
    ids=["rate", "bool-rate", "status", "latency", "down", "prefix", "seed", "typo", "list"],
)
def test_invalid_config_is_rejected(data: object, problem: str) -> None:
    with pytest.raises(FaultConfigError) as info:
        FaultConfig.parse(data)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(FaultConfigError) as info:
        FaultConfig.parse({"error_rate": 2, "latency_ms": "slow", "x": 1})
    assert len(info.value.problems) == 3


def test_defaults_pass_everything() -> None:
    assert FaultConfig.parse({}) == FaultConfig()
    assert FaultInjector().decide("/api/orders") == (FaultAction.PASS, 0.0)


def test_decide_respects_prefix_exemptions_and_down() -> None:
    injector = FaultInjector(FaultConfig(error_rate=1.0, latency_ms=50, path_prefix="/api/pay"))
    assert injector.decide("/api/payments") == (FaultAction.ERROR, 0.05)
    assert injector.decide("/api/orders") == (FaultAction.PASS, 0.0)
    injector.apply(FaultConfig(down=True))
    assert injector.decide("/api/orders")[0] is FaultAction.DOWN
    assert injector.decide("/health/live")[0] is FaultAction.PASS
    assert injector.decide("/_faults")[0] is FaultAction.PASS
    injector.apply(FaultConfig(down=True, reset=True))
    assert injector.decide("/health/ready")[0] is FaultAction.RESET


def test_seed_makes_error_sampling_reproducible() -> None:
    def run() -> list[FaultAction]:
        injector = FaultInjector()
        injector.apply(FaultConfig(error_rate=0.5, seed=7))
        return [injector.decide("/x")[0] for _ in range(50)]

    first = run()
    assert first == run()
    assert 10 < first.count(FaultAction.ERROR) < 40


@pytest.fixture(params=list(APPS), ids=list(APPS))
async def app_client(
    request: pytest.FixtureRequest,
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    tmp_path: Path,
) -> tuple[Client, str]:
    factory, path = APPS[request.param]
    return await aiohttp_client(factory(str(tmp_path / "app.sqlite3"))), path


async def test_error_rate_one_gives_500s(app_client: tuple[Client, str]) -> None:
    client, path = app_client
    await set_faults(client, error_rate=1.0)
    for _ in range(3):
        status, body = await json_of(client, "GET", path)
        assert (status, body["error"]) == (500, "injected_fault")
    await set_faults(client, error_rate=1.0, error_status=429)
    assert (await json_of(client, "GET", path))[0] == 429
    status, body = await json_of(client, "DELETE", "/_faults")
    assert (status, body) == (200, FaultConfig().to_json())
    assert (await json_of(client, "GET", path))[0] == 200


async def test_latency_adds_delay(app_client: tuple[Client, str]) -> None:
    client, path = app_client
    await set_faults(client, latency_ms=150)
    started = time.monotonic()
    status, _ = await json_of(client, "GET", path)
    assert status == 200
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    await json_of(client, "GET", "/health/live")
    assert time.monotonic() - started < 0.15


async def test_down_gives_503_but_not_on_liveness_or_admin(app_client: tuple[Client, str]) -> None:
    client, path = app_client
    await set_faults(client, down=True)
    status, body = await json_of(client, "GET", path)
    assert (status, body["error"]) == (503, "service_down")
    assert (await json_of(client, "GET", "/health/ready"))[0] == 503
    assert (await json_of(client, "GET", "/health/live"))[0] == 200
    status, config = await json_of(client, "GET", "/_faults")
    assert (status, config["down"]) == (200, True)


async def test_down_with_reset_drops_the_connection(app_client: tuple[Client, str]) -> None:
    client, path = app_client
    await set_faults(client, down=True, reset=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await json_of(client, "GET", path)
    await set_faults(client)
    assert (await json_of(client, "GET", path))[0] == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [({"error_rate": 7}, 400), ("not json", 400)],
    ids=["out-of-range", "malformed"],
)
async def test_bad_fault_config_is_400_and_keeps_the_old_one(
    app_client: tuple[Client, str], body: Any, status: int
) -> None:
    client, _ = app_client
    await set_faults(client, latency_ms=1)
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
    got, answer = await json_of(client, "PUT", "/_faults", **kwargs)
    assert (got, answer["error"]) == (status, "invalid_fault_config")
    assert (await json_of(client, "GET", "/_faults"))[1]["latency_ms"] == 1
