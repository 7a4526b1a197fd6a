"""Shipping: quotes and shipments.

Prices come from the products' weights (read straight from the catalog table,
legacy style): a base fee plus a fee per started kilogram; up to 2 kg goes as a
``parcel`` in 2 days, heavier as ``freight`` in 4. A shipment starts as
``label_created`` and can be cancelled until it ships.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from legacy_monolith.contract import LineRequest
from legacy_monolith.envelope import Conflict, NotFound, Unprocessable, new_id, utc_now

__all__ = ["cancel_shipment", "create_shipment", "get_shipment", "quote"]

BASE_FEE_CENTS = 495
FEE_PER_KG_CENTS = 150
PARCEL_LIMIT_GRAMS = 2000


def _weight(conn: sqlite3.Connection, lines: Sequence[LineRequest]) -> int:
    total = 0
    for line in lines:
        row = conn.execute(
            "SELECT weight_grams FROM products WHERE sku = ?", (line.sku,)
        ).fetchone()
        if row is None:
            raise Unprocessable(f"unknown sku '{line.sku}'", code="unknown_sku", sku=line.sku)
        total += row["weight_grams"] * line.qty
    return total


def _price(weight_grams: int) -> tuple[str, int, int]:
    kilograms = -(-weight_grams // 1000)
    carrier, days = ("parcel", 2) if weight_grams <= PARCEL_LIMIT_GRAMS else ("freight", 4)
    return carrier, BASE_FEE_CENTS + kilograms * FEE_PER_KG_CENTS, days


def quote(conn: sqlite3.Connection, sku: str, qty: int) -> dict[str, Any]:
    if conn.execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone() is None:
        raise NotFound(f"unknown sku '{sku}'", sku=sku)
    weight = _weight(conn, [LineRequest(sku, qty)])
    carrier, cost, days = _price(weight)
    return {
        "sku": sku,
        "qty": qty,
        "weight_grams": weight,
        "carrier": carrier,
        "cost_cents": cost,
        "estimated_days": days,
    }


def _shipment(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "order_id": row["order_id"],
        "status": row["status"],
        "carrier": row["carrier"],
        "tracking_number": row["tracking_number"],
        "cost_cents": row["cost_cents"],
        "weight_grams": row["weight_grams"],
        "items": json.loads(row["items_json"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def get_shipment(conn: sqlite3.Connection, shipment_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM shipments WHERE id = ?", (shipment_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown shipment '{shipment_id}'", shipment_id=shipment_id)
    return _shipment(row)


def create_shipment(
    conn: sqlite3.Connection, order_id: str, lines: Sequence[LineRequest]
) -> dict[str, Any]:
    weight = _weight(conn, lines)
    carrier, cost, _days = _price(weight)
    now = utc_now()
    shipment_id = new_id("SHP")
    items = [{"sku": line.sku, "qty": line.qty} for line in lines]
    conn.execute(
        "INSERT INTO shipments VALUES (?, ?, 'label_created', ?, ?, ?, ?, ?, ?, ?)",
        (
            shipment_id,
            order_id,
            carrier,
            new_id("TRK"),
            cost,
            weight,
            json.dumps(items),
            now,
            now,
        ),
    )
    return get_shipment(conn, shipment_id)


def cancel_shipment(conn: sqlite3.Connection, shipment_id: str) -> dict[str, Any]:
    shipment = get_shipment(conn, shipment_id)
    if shipment["status"] != "label_created":
        raise Conflict(
            f"shipment '{shipment_id}' is {shipment['status']}",
            code="shipment_not_cancellable",
            shipment_id=shipment_id,
            status=shipment["status"],
        )
    conn.execute(
        "UPDATE shipments SET status = 'cancelled', updated_at = ? WHERE id = ?",
        (utc_now(), shipment_id),
    )
    return get_shipment(conn, shipment_id)
