"""Customers: who can order and pay.

New customers get sequential ids after the seeded ones (``CUST-0005``...), so
ids are predictable in a fresh database; emails are unique.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from legacy_monolith.contract import required_str
from legacy_monolith.envelope import Conflict, NotFound, Unprocessable, utc_now

__all__ = ["create_customer", "get_customer", "list_customers"]


def _customer(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "created_at": row["created_at"],
    }


def list_customers(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_customer(row) for row in conn.execute("SELECT * FROM customers ORDER BY id")]


def get_customer(conn: sqlite3.Connection, customer_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown customer '{customer_id}'", customer_id=customer_id)
    return _customer(row)


def create_customer(conn: sqlite3.Connection, body: dict[str, Any]) -> dict[str, Any]:
    name = required_str(body, "name")
    email = required_str(body, "email").lower()
    if "@" not in email.strip("@"):
        raise Unprocessable("'email' is not an email address", code="invalid_email", field="email")
    if conn.execute("SELECT 1 FROM customers WHERE email = ?", (email,)).fetchone():
        raise Conflict(f"a customer with email '{email}' exists", code="duplicate_email")
    count = conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    customer_id = f"CUST-{count + 1:04d}"
    conn.execute("INSERT INTO customers VALUES (?, ?, ?, ?)", (customer_id, name, email, utc_now()))
    return get_customer(conn, customer_id)
