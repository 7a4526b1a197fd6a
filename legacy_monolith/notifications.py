"""Notifications: the outbox of customer e-mails the monolith would send.

Other modules append rows inside their own transactions, so a notification
exists exactly when the change it announces was committed.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from legacy_monolith.envelope import utc_now

__all__ = ["list_notifications", "notify"]


def notify(
    conn: sqlite3.Connection, customer_id: str, kind: str, subject: str, reference: str
) -> None:
    conn.execute(
        "INSERT INTO notifications (customer_id, kind, subject, reference, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (customer_id, kind, subject, reference, utc_now()),
    )


def list_notifications(
    conn: sqlite3.Connection, customer_id: str | None = None
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM notifications"
    params: tuple[str, ...] = ()
    if customer_id is not None:
        sql += " WHERE customer_id = ?"
        params = (customer_id,)
    return [
        {
            "id": row["id"],
            "customer_id": row["customer_id"],
            "kind": row["kind"],
            "subject": row["subject"],
            "reference": row["reference"],
            "created_at": row["created_at"],
        }
        for row in conn.execute(sql + " ORDER BY id", params)
    ]
