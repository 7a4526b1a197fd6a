"""Orders: the module that calls every other module in-process.

``place_order`` is the legacy transaction script the strangler migration is
about: in ONE database transaction it reserves stock (inventory), charges the
card (payments), books a shipment (shipping) and queues an e-mail
(notifications). Any failure raises and the caller's transaction rolls all of it
back, so no compensation is needed here; that is exactly what the extracted
orders service must replace with a saga. ``cancel_order`` undoes a placed order
the same way.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from legacy_monolith import inventory, notifications, payments, shipping
from legacy_monolith.contract import OrderRequest, required_str
from legacy_monolith.customers import get_customer
from legacy_monolith.envelope import Conflict, NotFound, Unprocessable, new_id, utc_now
from legacy_monolith.seed import CURRENCY

__all__ = [
    "ORDER_STATES",
    "cancel_order",
    "get_order",
    "list_orders",
    "place_order",
    "update_order",
]

ORDER_STATES = ("placed", "cancelled")
_TRANSITIONS = {"cancelled": "placed"}  # target state -> the state it may be reached from


def get_order(conn: sqlite3.Connection, order_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown order '{order_id}'", order_id=order_id)
    lines = conn.execute(
        "SELECT * FROM order_items WHERE order_id = ? ORDER BY line", (order_id,)
    ).fetchall()
    return {
        "id": row["id"],
        "customer_id": row["customer_id"],
        "state": row["state"],
        "items": [
            {
                "sku": line["sku"],
                "qty": line["qty"],
                "unit_price_cents": line["unit_price_cents"],
                "line_total_cents": line["qty"] * line["unit_price_cents"],
            }
            for line in lines
        ],
        "total_cents": row["total_cents"],
        "currency": row["currency"],
        "payment_id": row["payment_id"],
        "shipment_id": row["shipment_id"],
        "reservation_ids": [line["reservation_id"] for line in lines],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def list_orders(
    conn: sqlite3.Connection, customer_id: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    sql, params = "SELECT id FROM orders WHERE 1 = 1", list[str]()
    if customer_id is not None:
        sql, params = sql + " AND customer_id = ?", [*params, customer_id]
    if state is not None:
        sql, params = sql + " AND state = ?", [*params, state]
    ids = [row["id"] for row in conn.execute(sql + " ORDER BY created_at, id", params)]
    return [get_order(conn, order_id) for order_id in ids]


def _unit_price(conn: sqlite3.Connection, sku: str) -> int:
    row = conn.execute("SELECT price_cents FROM products WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        raise Unprocessable(f"unknown sku '{sku}'", code="unknown_sku", sku=sku)
    return int(row["price_cents"])


def place_order(conn: sqlite3.Connection, request: OrderRequest) -> dict[str, Any]:
    """Run inside the caller's transaction; every error leaves the database untouched."""
    try:
        get_customer(conn, request.customer_id)
    except NotFound:
        raise Unprocessable(
            f"unknown customer '{request.customer_id}'",
            code="unknown_customer",
            customer_id=request.customer_id,
        ) from None
    prices = [_unit_price(conn, line.sku) for line in request.items]
    total = sum(price * line.qty for price, line in zip(prices, request.items, strict=True))
    order_id = new_id("ORD")
    now = utc_now()
    conn.execute(
        "INSERT INTO orders VALUES (?, ?, 'placed', ?, ?, NULL, NULL, ?, ?)",
        (order_id, request.customer_id, total, CURRENCY, now, now),
    )
    for number, (line, price) in enumerate(zip(request.items, prices, strict=True), start=1):
        reservation = inventory.reserve(conn, line.sku, line.qty, order_id)
        conn.execute(
            "INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)",
            (order_id, number, line.sku, line.qty, price, reservation["id"]),
        )
    charge = payments.ChargeRequest(request.customer_id, total, request.card_number, order_id)
    payment = payments.charge(conn, charge)
    if payment["status"] != "captured":
        raise payments.PaymentDeclined(
            f"payment declined: {payment['decline_reason']}",
            reason=payment["decline_reason"],
        )
    shipment = shipping.create_shipment(conn, order_id, request.items)
    conn.execute(
        "UPDATE orders SET payment_id = ?, shipment_id = ? WHERE id = ?",
        (payment["id"], shipment["id"], order_id),
    )
    notifications.notify(
        conn, request.customer_id, "order_placed", f"Order {order_id} confirmed", order_id
    )
    return get_order(conn, order_id)


def update_order(conn: sqlite3.Connection, order_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: ``{"state": "cancelled"}`` is the only change the monolith allows."""
    target = required_str(body, "state")
    if target not in _TRANSITIONS:
        raise Unprocessable(
            f"cannot set state '{target}' (allowed: {', '.join(_TRANSITIONS)})",
            code="invalid_state",
            field="state",
        )
    return cancel_order(conn, order_id)


def cancel_order(conn: sqlite3.Connection, order_id: str) -> dict[str, Any]:
    order = get_order(conn, order_id)
    if order["state"] != _TRANSITIONS["cancelled"]:
        raise Conflict(
            f"order '{order_id}' is {order['state']}",
            code="order_not_cancellable",
            order_id=order_id,
            state=order["state"],
        )
    for reservation_id in order["reservation_ids"]:
        inventory.release(conn, reservation_id)
    if order["payment_id"]:
        payments.refund(conn, order["payment_id"])
    if order["shipment_id"]:
        shipping.cancel_shipment(conn, order["shipment_id"])
    conn.execute(
        "UPDATE orders SET state = 'cancelled', updated_at = ? WHERE id = ?",
        (utc_now(), order_id),
    )
    notifications.notify(
        conn, order["customer_id"], "order_cancelled", f"Order {order_id} cancelled", order_id
    )
    return get_order(conn, order_id)
