"""The orders service's own database: orders, their lines and their saga logs.

Database per service: nothing here is shared with the monolith. An order row is
written as ``pending`` before its saga starts, so an order that fails half-way
still exists with the ids it touched (the reservation, the refunded payment);
``finish`` stores the final state and the saga log in one transaction. Order
JSON has the monolith's shape plus a ``saga`` list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from extracted_services.orders.saga import StepRecord
from legacy_monolith.envelope import NotFound, utc_now
from legacy_monolith.seed import CURRENCY
from legacy_monolith.sqlite import transaction

__all__ = ["SCHEMA", "OrderDraft", "OrderStore", "PricedLine", "no_seed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    state TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    payment_id TEXT,
    shipment_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line INTEGER NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    reservation_id TEXT,
    PRIMARY KEY (order_id, line)
);
CREATE TABLE IF NOT EXISTS saga_log (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    phase TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    compensates TEXT,
    PRIMARY KEY (order_id, seq)
)
"""


def no_seed(conn: sqlite3.Connection) -> None:
    """Orders start empty: the monolith's past orders stay in the monolith."""


@dataclass(frozen=True, slots=True)
class PricedLine:
    sku: str
    qty: int
    unit_price_cents: int


@dataclass(slots=True)
class OrderDraft:
    """An order while its saga runs; saga steps fill in the ids they create."""

    id: str
    customer_id: str
    card_number: str
    lines: tuple[PricedLine, ...]
    reservation_ids: dict[str, str] = field(default_factory=dict)
    payment_id: str | None = None
    shipment_id: str | None = None

    @property
    def total_cents(self) -> int:
        return sum(line.qty * line.unit_price_cents for line in self.lines)


class OrderStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def create_pending(self, draft: OrderDraft) -> None:
        now = utc_now()
        with transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO orders VALUES (?, ?, 'pending', ?, ?, NULL, NULL, ?, ?)",
                (draft.id, draft.customer_id, draft.total_cents, CURRENCY, now, now),
            )
            conn.executemany(
                "INSERT INTO order_items VALUES (?, ?, ?, ?, ?, NULL)",
                [
                    (draft.id, number, line.sku, line.qty, line.unit_price_cents)
                    for number, line in enumerate(draft.lines, start=1)
                ],
            )

    def finish(self, draft: OrderDraft, state: str, records: Sequence[StepRecord]) -> None:
        with transaction(self._conn) as conn:
            conn.execute(
                "UPDATE orders SET state = ?, payment_id = ?, shipment_id = ?, updated_at = ?"
                " WHERE id = ?",
                (state, draft.payment_id, draft.shipment_id, utc_now(), draft.id),
            )
            for sku, reservation_id in draft.reservation_ids.items():
                conn.execute(
                    "UPDATE order_items SET reservation_id = ? WHERE order_id = ? AND sku = ?",
                    (reservation_id, draft.id, sku),
                )
            conn.execute("DELETE FROM saga_log WHERE order_id = ?", (draft.id,))
            conn.executemany(
                "INSERT INTO saga_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (draft.id, seq, r.step, r.phase, r.outcome, r.detail, r.compensates)
                    for seq, r in enumerate(records, start=1)
                ],
            )

    def get(self, order_id: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown order '{order_id}'", order_id=order_id)
        lines = self._conn.execute(
            "SELECT * FROM order_items WHERE order_id = ? ORDER BY line", (order_id,)
        ).fetchall()
        saga = self._conn.execute(
            "SELECT * FROM saga_log WHERE order_id = ? ORDER BY seq", (order_id,)
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
            "reservation_ids": [line["reservation_id"] for line in lines if line["reservation_id"]],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "saga": [
                StepRecord(
                    r["step"], r["phase"], r["outcome"], r["detail"], r["compensates"]
                ).to_json()
                for r in saga
            ],
        }

    def list_orders(
        self, customer_id: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT id FROM orders WHERE 1 = 1", list[str]()
        if customer_id is not None:
            sql, params = sql + " AND customer_id = ?", [*params, customer_id]
        if state is not None:
            sql, params = sql + " AND state = ?", [*params, state]
        ids = [row["id"] for row in self._conn.execute(sql + " ORDER BY created_at, id", params)]
        return [self.get(order_id) for order_id in ids]
