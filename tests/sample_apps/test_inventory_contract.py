"""The inventory service answers like the monolith for the same requests.

Each scenario is a short script of requests; it runs once against a fresh
monolith and once against a fresh inventory service, and the two transcripts
must be equal once volatile fields (timestamps, server, request id, generated
reservation ids) are masked.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .calls import Client, json_of

VOLATILE_KEYS = frozenset({"generated_at", "server", "request_id", "updated_at", "created_at"})
GENERATED_ID = re.compile(r"RSV-[0-9A-F]{12}")
Transcript = list[tuple[int, Any]]
Scenario = Callable[[Client], Awaitable[Transcript]]


def mask(value: Any) -> Any:
    """Replace volatile values with a placeholder, recursively."""
    if isinstance(value, dict):
        return {
            key: "<volatile>" if key in VOLATILE_KEYS else mask(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask(item) for item in value]
    if isinstance(value, str):
        return GENERATED_ID.sub("RSV-<id>", value)
    return value


def request(method: str, path: str, **kwargs: Any) -> Scenario:
    async def run(client: Client) -> Transcript:
        return [await json_of(client, method, path, **kwargs)]

    return run


async def reserve_release_twice(client: Client) -> Transcript:
    first = await json_of(
        client, "POST", "/api/inventory/SKU-1005/reservations", json={"qty": 4, "order_id": "O-1"}
    )
    reservation_id = first[1]["reservation"]["id"]
    path = f"/api/inventory/reservations/{reservation_id}"
    return [
        first,
        await json_of(client, "GET", "/api/inventory/SKU-1005"),
        await json_of(client, "DELETE", path),
        await json_of(client, "DELETE", path),
        await json_of(client, "GET", "/api/inventory"),
    ]


async def drain_stock(client: Client) -> Transcript:
    path = "/api/inventory/SKU-1011/reservations"
    return [
        await json_of(client, "POST", path, json={"qty": 3}),
        await json_of(client, "POST", path, json={"qty": 3}),
        await json_of(client, "POST", path, json={"qty": 2}),
        await json_of(client, "GET", "/api/inventory/SKU-1011"),
    ]


RESERVE = "/api/inventory/SKU-1001/reservations"
SCENARIOS: dict[str, Scenario] = {
    "list": request("GET", "/api/inventory"),
    "get": request("GET", "/api/inventory/SKU-1001"),
    "get-unknown-sku": request("GET", "/api/inventory/SKU-0000"),
    "reserve": request("POST", RESERVE, json={"qty": 2}),
    "reserve-too-many": request("POST", RESERVE, json={"qty": 1000}),
    "reserve-zero-stock": request("POST", "/api/inventory/SKU-1012/reservations", json={"qty": 1}),
    "reserve-zero-qty": request("POST", RESERVE, json={"qty": 0}),
    "reserve-string-qty": request("POST", RESERVE, json={"qty": "2"}),
    "reserve-no-body": request("POST", RESERVE),
    "reserve-bad-json": request("POST", RESERVE, data=b"{"),
    "reserve-unknown-sku": request("POST", "/api/inventory/SKU-0/reservations", json={"qty": 1}),
    "release-unknown": request("DELETE", "/api/inventory/reservations/RSV-NOPE"),
    "wrong-method": request("PUT", "/api/inventory/SKU-1001"),
    "reserve-release-twice": reserve_release_twice,
    "drain-stock": drain_stock,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
async def test_same_answers_as_monolith(
    monolith: Client, inventory: Client, scenario: Scenario
) -> None:
    expected = mask(await scenario(monolith))
    actual = mask(await scenario(inventory))
    assert actual == expected


async def test_volatile_fields_differ(monolith: Client, inventory: Client) -> None:
    _, legacy = await json_of(monolith, "POST", RESERVE, json={"qty": 1})
    _, extracted = await json_of(inventory, "POST", RESERVE, json={"qty": 1})
    assert legacy["server"] != extracted["server"]
    assert legacy["reservation"]["id"] != extracted["reservation"]["id"]
    assert mask(legacy) == mask(extracted)


async def test_inventory_service_health(inventory: Client) -> None:
    assert (await json_of(inventory, "GET", "/health/live"))[0] == 200
    status, body = await json_of(inventory, "GET", "/health/ready")
    assert (status, body["status"]) == (200, "ready")
