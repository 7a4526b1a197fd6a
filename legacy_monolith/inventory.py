"""Inventory: stock levels and reservations.

``available = on_hand - reserved``; a reservation holds ``qty`` units from the
moment it is made until it is released (an order cancelled, a saga compensated).
Reservations are never deleted, only moved from ``active`` to ``released``.
Callers own the transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from legacy_monolith.envelope import Conflict, NotFound, new_id, utc_now

__all__ = ["get_item", "get_reservation", "list_items", "release", "reserve"]


def _item(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "sku": row["sku"],
        "on_hand": row["on_hand"],
        "reserved": row["reserved"],
        "available": row["on_hand"] - row["reserved"],
        "updated_at": row["updated_at"],
    }


def _reservation(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sku": row["sku"],
        "qty": row["qty"],
        "status": row["status"],
        "order_id": row["order_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def list_items(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_item(row) for row in conn.execute("SELECT * FROM inventory ORDER BY sku")]


def get_item(conn: sqlite3.Connection, sku: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM inventory WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        raise NotFound(f"unknown sku '{sku}'", sku=sku)
    return _item(row)


def get_reservation(conn: sqlite3.Connection, reservation_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM reservations WHERE id = ?", (reservation_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown reservation '{reservation_id}'", reservation_id=reservation_id)
    return _reservation(row)


def reserve(
    conn: sqlite3.Connection, sku: str, qty: int, order_id: str | None = None
) -> dict[str, Any]:
    """Hold ``qty`` units of ``sku``; 404 for an unknown sku, 409 when too few are available."""
    item = get_item(conn, sku)
    if item["available"] < qty:
        raise Conflict(
            f"only {item['available']} of '{sku}' available",
            code="insufficient_stock",
            sku=sku,
            requested=qty,
            available=item["available"],
        )
    now = utc_now()
    reservation_id = new_id("RSV")
    conn.execute(
        "UPDATE inventory SET reserved = reserved + ?, updated_at = ? WHERE sku = ?",
        (qty, now, sku),
    )
    conn.execute(
        "INSERT INTO reservations VALUES (?, ?, ?, 'active', ?, ?, ?)",
        (reservation_id, sku, qty, order_id, now, now),
    )
    return get_reservation(conn, reservation_id)


def release(conn: sqlite3.Connection, reservation_id: str) -> dict[str, Any]:
    """Give the units back; 404 for an unknown id, 409 when already released."""
    reservation = get_reservation(conn, reservation_id)
    if reservation["status"] != "active":
        raise Conflict(
            f"reservation '{reservation_id}' is {reservation['status']}",
            code="reservation_not_active",
            reservation_id=reservation_id,
            status=reservation["status"],
        )
    now = utc_now()
    conn.execute(
        "UPDATE inventory SET reserved = reserved - ?, updated_at = ? WHERE sku = ?",
        (reservation["qty"], now, reservation["sku"]),
    )
    conn.execute(
        "UPDATE reservations SET status = 'released', updated_at = ? WHERE id = ?",
        (now, reservation_id),
    )
    return get_reservation(conn, reservation_id)
