"""The inventory service's own database: stock levels and reservations.

Database per service: these tables live in the service's own SQLite file and
nothing else reads them. They are seeded from ``legacy_monolith.seed`` on first
start, so a fresh service starts with exactly the monolith's stock. The rules
match the monolith's: ``available = on_hand - reserved``; a reservation is
``active`` until released, then ``released`` forever; an unknown sku is 404,
too little stock and a second release are 409.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from legacy_monolith.envelope import Conflict, NotFound, new_id, utc_now
from legacy_monolith.seed import PRODUCTS, SEEDED_AT
from legacy_monolith.sqlite import transaction

__all__ = ["SCHEMA", "StockStore", "seed_stock"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT PRIMARY KEY,
    on_hand INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL REFERENCES stock (sku),
    qty INTEGER NOT NULL CHECK (qty > 0),
    status TEXT NOT NULL CHECK (status IN ('active', 'released')),
    order_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""


def seed_stock(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO stock VALUES (?, ?, 0, ?)",
        [(product.sku, product.stock, SEEDED_AT) for product in PRODUCTS],
    )


class StockStore:
    """Reads and writes over one connection; each write is its own transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def items(self) -> list[dict[str, Any]]:
        return [_item(row) for row in self._conn.execute("SELECT * FROM stock ORDER BY sku")]

    def item(self, sku: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT * FROM stock WHERE sku = ?", (sku,)).fetchone()
        if row is None:
            raise NotFound(f"unknown sku '{sku}'", sku=sku)
        return _item(row)

    def reservation(self, reservation_id: str) -> dict[str, Any]:
        row = self._conn.execute(
            "SELECT * FROM reservations WHERE id = ?", (reservation_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"unknown reservation '{reservation_id}'", reservation_id=reservation_id)
        return _reservation(row)

    def reserve(self, sku: str, qty: int, order_id: str | None) -> dict[str, Any]:
        with transaction(self._conn) as conn:
            available = self.item(sku)["available"]
            if available < qty:
                raise Conflict(
                    f"only {available} of '{sku}' available",
                    code="insufficient_stock",
                    sku=sku,
                    requested=qty,
                    available=available,
                )
            now, reservation_id = utc_now(), new_id("RSV")
            conn.execute(
                "UPDATE stock SET reserved = reserved + ?, updated_at = ? WHERE sku = ?",
                (qty, now, sku),
            )
            conn.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, 'active', ?, ?, ?)",
                (reservation_id, sku, qty, order_id, now, now),
            )
        return self.reservation(reservation_id)

    def release(self, reservation_id: str) -> dict[str, Any]:
        with transaction(self._conn) as conn:
            reservation = self.reservation(reservation_id)
            if reservation["status"] != "active":
                raise Conflict(
                    f"reservation '{reservation_id}' is {reservation['status']}",
                    code="reservation_not_active",
                    reservation_id=reservation_id,
                    status=reservation["status"],
                )
            now = utc_now()
            conn.execute(
                "UPDATE stock SET reserved = reserved - ?, updated_at = ? WHERE sku = ?",
                (reservation["qty"], now, reservation["sku"]),
            )
            conn.execute(
                "UPDATE reservations SET status = 'released', updated_at = ? WHERE id = ?",
                (now, reservation_id),
            )
        return self.reservation(reservation_id)


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
