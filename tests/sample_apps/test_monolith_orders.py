"""The monolith's orders, payments, shipping and notifications, over real HTTP.

Placing an order touches inventory, payments, shipping and notifications in one
transaction: these tests check every side effect, and that a failure leaves none.
"""

from __future__ import annotations

from typing import Any

import pytest

from .calls import Client, json_of

ITEMS = [{"sku": "SKU-1002", "qty": 2}]
ORDER: dict[str, Any] = {"customer_id": "CUST-0001", "items": ITEMS}
DECLINED_CARD = "4000000000000002"


async def _available(client: Client, sku: str) -> int:
    _, body = await json_of(client, "GET", f"/api/inventory/{sku}")
    return int(body["item"]["available"])


async def _snapshot(client: Client) -> dict[str, Any]:
    """Everything an order placement could change."""
    _, inventory = await json_of(client, "GET", "/api/inventory")
    _, orders = await json_of(client, "GET", "/api/orders")
    _, notes = await json_of(client, "GET", "/api/notifications")
    stock = [(i["sku"], i["reserved"]) for i in inventory["items"]]
    return {"stock": stock, "orders": orders["count"], "notifications": notes["count"]}


async def test_place_order_touches_every_module(monolith: Client) -> None:
    status, body = await json_of(monolith, "POST", "/api/orders", json=ORDER)
    assert status == 201
    order = body["order"]
    assert order["state"] == "placed"
    assert order["items"] == [
        {"sku": "SKU-1002", "qty": 2, "unit_price_cents": 8900, "line_total_cents": 17800}
    ]
    assert order["total_cents"] == 17800
    assert await _available(monolith, "SKU-1002") == 28

    _, payment = await json_of(monolith, "GET", f"/api/payments/{order['payment_id']}")
    assert payment["payment"]["status"] == "captured"
    assert payment["payment"]["amount_cents"] == 17800
    assert payment["payment"]["order_id"] == order["id"]

    _, shipment = await json_of(monolith, "GET", f"/api/shipping/shipments/{order['shipment_id']}")
    assert shipment["shipment"]["status"] == "label_created"
    assert shipment["shipment"]["items"] == [{"sku": "SKU-1002", "qty": 2}]

    _, notes = await json_of(
        monolith, "GET", "/api/notifications", params={"customer_id": "CUST-0001"}
    )
    assert [(n["kind"], n["reference"]) for n in notes["notifications"]] == [
        ("order_placed", order["id"])
    ]
    _, fetched = await json_of(monolith, "GET", f"/api/orders/{order['id']}")
    assert fetched["order"] == order


async def test_list_orders_filters(monolith: Client) -> None:
    await json_of(monolith, "POST", "/api/orders", json=ORDER)
    await json_of(monolith, "POST", "/api/orders", json={**ORDER, "customer_id": "CUST-0002"})
    _, everything = await json_of(monolith, "GET", "/api/orders")
    _, mine = await json_of(monolith, "GET", "/api/orders", params={"customer_id": "CUST-0002"})
    assert everything["count"] == 2
    assert [o["customer_id"] for o in mine["orders"]] == ["CUST-0002"]


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ({**ORDER, "items": [{"sku": "SKU-1011", "qty": 6}]}, 409, "insufficient_stock"),
        ({**ORDER, "card_number": DECLINED_CARD}, 402, "payment_declined"),
        ({**ORDER, "customer_id": "CUST-9999"}, 422, "unknown_customer"),
        ({**ORDER, "items": [{"sku": "SKU-0000", "qty": 1}]}, 422, "unknown_sku"),
        ({**ORDER, "items": [{"sku": "SKU-1001", "qty": -1}]}, 422, "invalid_quantity"),
        ({**ORDER, "items": ITEMS * 2}, 422, "duplicate_sku"),
        ({**ORDER, "card_number": "abcd"}, 422, "invalid_card"),
        ({**ORDER, "items": []}, 400, "invalid_request"),
        ({"items": ORDER["items"]}, 400, "invalid_request"),
    ],
    ids=[
        "out-of-stock",
        "card-declined",
        "unknown-customer",
        "unknown-sku",
        "negative-qty",
        "duplicate-sku",
        "bad-card",
        "no-items",
        "no-customer",
    ],
)
async def test_failed_order_changes_nothing(
    monolith: Client, payload: dict[str, Any], status: int, error: str
) -> None:
    before = await _snapshot(monolith)
    got, body = await json_of(monolith, "POST", "/api/orders", json=payload)
    assert (got, body["error"]) == (status, error)
    assert await _snapshot(monolith) == before


async def test_cancel_order_undoes_everything(monolith: Client) -> None:
    _, body = await json_of(monolith, "POST", "/api/orders", json=ORDER)
    order = body["order"]
    status, body = await json_of(
        monolith, "PATCH", f"/api/orders/{order['id']}", json={"state": "cancelled"}
    )
    assert (status, body["order"]["state"]) == (200, "cancelled")
    assert await _available(monolith, "SKU-1002") == 30
    _, payment = await json_of(monolith, "GET", f"/api/payments/{order['payment_id']}")
    assert payment["payment"]["status"] == "refunded"
    _, shipment = await json_of(monolith, "GET", f"/api/shipping/shipments/{order['shipment_id']}")
    assert shipment["shipment"]["status"] == "cancelled"
    _, notes = await json_of(monolith, "GET", "/api/notifications")
    assert [n["kind"] for n in notes["notifications"]] == ["order_placed", "order_cancelled"]

    status, body = await json_of(
        monolith, "PATCH", f"/api/orders/{order['id']}", json={"state": "cancelled"}
    )
    assert (status, body["error"]) == (409, "order_not_cancellable")


@pytest.mark.parametrize(
    ("order_id", "payload", "status", "error"),
    [
        ("ORD-NOPE", {"state": "cancelled"}, 404, "not_found"),
        (None, {"state": "shipped"}, 422, "invalid_state"),
        (None, {"note": "hi"}, 400, "invalid_request"),
    ],
    ids=["unknown-order", "unsupported-state", "missing-state"],
)
async def test_update_order_errors(
    monolith: Client, order_id: str | None, payload: dict[str, str], status: int, error: str
) -> None:
    if order_id is None:
        _, body = await json_of(monolith, "POST", "/api/orders", json=ORDER)
        order_id = body["order"]["id"]
    got, body = await json_of(monolith, "PATCH", f"/api/orders/{order_id}", json=payload)
    assert (got, body["error"]) == (status, error)


async def test_get_unknown_order_is_404(monolith: Client) -> None:
    status, body = await json_of(monolith, "GET", "/api/orders/ORD-NOPE")
    assert (status, body["error"], body["order_id"]) == (404, "not_found", "ORD-NOPE")


async def test_payment_charge_refund(monolith: Client) -> None:
    charge = {"customer_id": "CUST-0003", "amount_cents": 1234}
    status, body = await json_of(monolith, "POST", "/api/payments", json=charge)
    assert status == 201
    payment = body["payment"]
    assert (payment["status"], payment["card_last4"]) == ("captured", "4242")
    status, body = await json_of(monolith, "POST", f"/api/payments/{payment['id']}/refund")
    assert (status, body["payment"]["status"]) == (200, "refunded")
    status, body = await json_of(monolith, "POST", f"/api/payments/{payment['id']}/refund")
    assert (status, body["error"], body["status"]) == (409, "payment_not_refundable", "refunded")


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ({"card_number": DECLINED_CARD}, 402, "payment_declined"),
        ({"amount_cents": 0}, 422, "invalid_amount"),
        ({"amount_cents": "10"}, 400, "invalid_request"),
        ({"currency": "USD"}, 422, "invalid_currency"),
        ({"customer_id": "CUST-9999"}, 422, "unknown_customer"),
    ],
    ids=["declined", "zero-amount", "string-amount", "other-currency", "unknown-customer"],
)
async def test_payment_errors(
    monolith: Client, payload: dict[str, Any], status: int, error: str
) -> None:
    charge = {"customer_id": "CUST-0003", "amount_cents": 1234, **payload}
    got, body = await json_of(monolith, "POST", "/api/payments", json=charge)
    assert (got, body["error"]) == (status, error)


async def test_declined_payment_is_stored(monolith: Client) -> None:
    charge = {"customer_id": "CUST-0003", "amount_cents": 5, "card_number": DECLINED_CARD}
    _, body = await json_of(monolith, "POST", "/api/payments", json=charge)
    assert body["reason"] == "card_declined"
    status, stored = await json_of(monolith, "GET", f"/api/payments/{body['payment']['id']}")
    assert (status, stored["payment"]["status"]) == (200, "declined")
    assert (await json_of(monolith, "GET", "/api/payments/PAY-NOPE"))[0] == 404


async def test_shipping_quote_is_deterministic(monolith: Client) -> None:
    status, body = await json_of(
        monolith, "GET", "/api/shipping/quote", params={"sku": "SKU-1003", "qty": "2"}
    )
    assert status == 200
    assert body["quote"] == {
        "sku": "SKU-1003",
        "qty": 2,
        "weight_grams": 1800,
        "carrier": "parcel",
        "cost_cents": 795,  # 4.95 base + 2 started kg x 1.50
        "estimated_days": 2,
    }


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"qty": "1"}, 400, "invalid_request"),
        ({"sku": "SKU-1001"}, 400, "invalid_request"),
        ({"sku": "SKU-1001", "qty": "two"}, 400, "invalid_request"),
        ({"sku": "SKU-1001", "qty": "0"}, 422, "invalid_quantity"),
        ({"sku": "SKU-0000", "qty": "1"}, 404, "not_found"),
    ],
    ids=["no-sku", "no-qty", "word-qty", "zero-qty", "unknown-sku"],
)
async def test_shipping_quote_errors(
    monolith: Client, params: dict[str, str], status: int, error: str
) -> None:
    got, body = await json_of(monolith, "GET", "/api/shipping/quote", params=params)
    assert (got, body["error"]) == (status, error)


async def test_shipments_create_get_cancel(monolith: Client) -> None:
    payload = {"order_id": "EXT-1", "items": [{"sku": "SKU-1007", "qty": 1}]}
    status, body = await json_of(monolith, "POST", "/api/shipping/shipments", json=payload)
    assert status == 201
    shipment = body["shipment"]
    assert (shipment["carrier"], shipment["weight_grams"]) == ("freight", 2400)
    path = f"/api/shipping/shipments/{shipment['id']}"
    assert (await json_of(monolith, "GET", path))[1]["shipment"]["order_id"] == "EXT-1"
    status, body = await json_of(monolith, "POST", path + "/cancel")
    assert (status, body["shipment"]["status"]) == (200, "cancelled")
    assert (await json_of(monolith, "GET", "/api/shipping/shipments/SHP-NOPE"))[0] == 404
    bad = {"order_id": "EXT-2", "items": [{"sku": "SKU-0000", "qty": 1}]}
    status, body = await json_of(monolith, "POST", "/api/shipping/shipments", json=bad)
    assert (status, body["error"]) == (422, "unknown_sku")
