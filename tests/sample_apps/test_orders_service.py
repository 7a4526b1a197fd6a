"""The orders service's saga over real HTTP: monolith, inventory service and orders service.

Every path is checked at its effects on the other owners: stock at the
inventory service, payments and shipments at the monolith.
"""

from __future__ import annotations

from typing import Any

import pytest

from .calls import Client, json_of, set_faults
from .conftest import Stack

ORDER = {"customer_id": "CUST-0002", "items": [{"sku": "SKU-1003", "qty": 2}]}
TWO_LINES = {
    "customer_id": "CUST-0002",
    "items": [{"sku": "SKU-1003", "qty": 2}, {"sku": "SKU-1009", "qty": 1}],
}


async def _available(inventory: Client, sku: str) -> int:
    _, body = await json_of(inventory, "GET", f"/api/inventory/{sku}")
    return int(body["item"]["available"])


def _saga(order: dict[str, Any]) -> list[tuple[str, str]]:
    return [(record["step"], record["outcome"]) for record in order["saga"]]


async def test_happy_path_places_the_order(stack: Stack) -> None:
    status, body = await json_of(stack.orders, "POST", "/api/orders", json=TWO_LINES)
    assert status == 201, body
    order = body["order"]
    assert order["state"] == "placed"
    assert order["total_cents"] == 2 * 4500 + 3400
    assert _saga(order) == [
        ("reserve_stock", "ok"),
        ("reserve_stock", "ok"),
        ("charge_payment", "ok"),
        ("create_shipment", "ok"),
        ("confirm_order", "ok"),
    ]
    assert len(order["reservation_ids"]) == 2
    assert await _available(stack.inventory, "SKU-1003") == 38
    assert await _available(stack.inventory, "SKU-1009") == 59
    _, payment = await json_of(stack.monolith, "GET", f"/api/payments/{order['payment_id']}")
    assert (payment["payment"]["status"], payment["payment"]["amount_cents"]) == ("captured", 12400)
    _, shipment = await json_of(
        stack.monolith, "GET", f"/api/shipping/shipments/{order['shipment_id']}"
    )
    assert shipment["shipment"]["order_id"] == order["id"]
    # The monolith's own stock is not the inventory service's: database per service.
    _, legacy_item = await json_of(stack.monolith, "GET", "/api/inventory/SKU-1003")
    assert legacy_item["item"]["available"] == 40

    _, fetched = await json_of(stack.orders, "GET", f"/api/orders/{order['id']}")
    assert fetched["order"] == order
    _, listed = await json_of(stack.orders, "GET", "/api/orders", params={"state": "placed"})
    assert [o["id"] for o in listed["orders"]] == [order["id"]]


async def test_out_of_stock_rejects_and_releases_earlier_lines(stack: Stack) -> None:
    payload = {**TWO_LINES, "items": [*TWO_LINES["items"][:1], {"sku": "SKU-1012", "qty": 1}]}
    status, body = await json_of(stack.orders, "POST", "/api/orders", json=payload)
    assert (status, body["error"]) == (409, "insufficient_stock")
    order = body["order"]
    assert order["state"] == "rejected_out_of_stock"
    assert _saga(order) == [
        ("reserve_stock", "ok"),
        ("reserve_stock", "rejected"),
        ("release_reservation", "ok"),
    ]
    assert order["payment_id"] is None
    assert await _available(stack.inventory, "SKU-1003") == 40
    _, fetched = await json_of(stack.orders, "GET", f"/api/orders/{order['id']}")
    assert fetched["order"]["state"] == "rejected_out_of_stock"


async def test_declined_payment_releases_the_reservation(stack: Stack) -> None:
    payload = {**ORDER, "card_number": "4000000000009995"}
    status, body = await json_of(stack.orders, "POST", "/api/orders", json=payload)
    assert (status, body["error"]) == (402, "payment_declined")
    order = body["order"]
    assert order["state"] == "payment_failed_compensated"
    assert _saga(order) == [
        ("reserve_stock", "ok"),
        ("charge_payment", "rejected"),
        ("release_reservation", "ok"),
    ]
    assert await _available(stack.inventory, "SKU-1003") == 40


async def test_payments_outage_releases_the_reservation(stack: Stack) -> None:
    await set_faults(stack.monolith, error_rate=1.0, path_prefix="/api/payments")
    status, body = await json_of(stack.orders, "POST", "/api/orders", json=ORDER)
    assert (status, body["error"]) == (502, "order_failed")
    order = body["order"]
    assert order["state"] == "payment_failed_compensated"
    assert "answered 500" in order["saga"][1]["detail"]
    assert _saga(order)[-1] == ("release_reservation", "ok")
    assert await _available(stack.inventory, "SKU-1003") == 40


async def test_later_step_failure_refunds_and_releases(stack: Stack) -> None:
    await set_faults(stack.monolith, error_rate=1.0, error_status=503, path_prefix="/api/shipping")
    status, body = await json_of(stack.orders, "POST", "/api/orders", json=ORDER)
    assert (status, body["error"]) == (502, "order_failed")
    order = body["order"]
    assert order["state"] == "failed_compensated"
    assert _saga(order) == [
        ("reserve_stock", "ok"),
        ("charge_payment", "ok"),
        ("create_shipment", "failed"),
        ("refund_payment", "ok"),
        ("release_reservation", "ok"),
    ]
    _, payment = await json_of(stack.monolith, "GET", f"/api/payments/{order['payment_id']}")
    assert payment["payment"]["status"] == "refunded"
    assert await _available(stack.inventory, "SKU-1003") == 40


async def test_failed_compensation_is_reported(stack: Stack) -> None:
    await set_faults(stack.monolith, error_rate=1.0, path_prefix="/api/shipping")
    await set_faults(stack.inventory, error_rate=1.0, path_prefix="/api/inventory/reservations")
    status, body = await json_of(stack.orders, "POST", "/api/orders", json=ORDER)
    assert (status, body["error"]) == (500, "compensation_failed")
    order = body["order"]
    assert order["state"] == "compensation_failed"
    assert _saga(order)[-2:] == [("refund_payment", "ok"), ("release_reservation", "failed")]
    assert await _available(stack.inventory, "SKU-1003") == 38  # still held: needs an operator


async def test_inventory_down_fails_before_any_charge(stack: Stack) -> None:
    await set_faults(stack.inventory, down=True)
    status, body = await json_of(stack.orders, "POST", "/api/orders", json=ORDER)
    assert (status, body["order"]["state"]) == (502, "failed_compensated")
    assert _saga(body["order"]) == [("reserve_stock", "failed")]


async def test_monolith_down_is_502_and_stores_nothing(stack: Stack) -> None:
    await set_faults(stack.monolith, down=True)
    status, body = await json_of(stack.orders, "POST", "/api/orders", json=ORDER)
    assert (status, body["error"]) == (502, "upstream_unavailable")
    _, listed = await json_of(stack.orders, "GET", "/api/orders")
    assert listed["count"] == 0


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ({**ORDER, "customer_id": "CUST-9999"}, 422, "unknown_customer"),
        ({**ORDER, "items": [{"sku": "SKU-0000", "qty": 1}]}, 422, "unknown_sku"),
        ({**ORDER, "items": [{"sku": "SKU-1003", "qty": 0}]}, 422, "invalid_quantity"),
        ({"items": ORDER["items"]}, 400, "invalid_request"),
    ],
    ids=["unknown-customer", "unknown-sku", "zero-qty", "no-customer"],
)
async def test_validation_matches_monolith_and_stores_nothing(
    stack: Stack, payload: dict[str, Any], status: int, error: str
) -> None:
    legacy = await json_of(stack.monolith, "POST", "/api/orders", json=payload)
    extracted = await json_of(stack.orders, "POST", "/api/orders", json=payload)
    assert (extracted[0], extracted[1]["error"]) == (legacy[0], legacy[1]["error"])
    assert (extracted[0], extracted[1]["error"]) == (status, error)
    _, listed = await json_of(stack.orders, "GET", "/api/orders")
    assert listed["count"] == 0


async def test_unknown_order_and_health(stack: Stack) -> None:
    status, body = await json_of(stack.orders, "GET", "/api/orders/ORD-NOPE")
    assert (status, body["error"]) == (404, "not_found")
    assert (await json_of(stack.orders, "GET", "/health/ready"))[0] == 200
