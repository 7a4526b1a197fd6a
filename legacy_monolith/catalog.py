"""Catalog: products and their prices.

Legacy coupling kept on purpose: a product's ``in_stock`` flag is computed by
joining the inventory table, so catalog reads change when orders reserve stock.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from legacy_monolith.envelope import NotFound

__all__ = ["get_product", "list_products"]

_SELECT = """
SELECT p.sku, p.name, p.category, p.price_cents, p.currency, p.weight_grams,
       i.on_hand - i.reserved AS available
FROM products p JOIN inventory i ON i.sku = p.sku
"""


def _product(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "sku": row["sku"],
        "name": row["name"],
        "category": row["category"],
        "price_cents": row["price_cents"],
        "currency": row["currency"],
        "weight_grams": row["weight_grams"],
        "in_stock": row["available"] > 0,
    }


def list_products(conn: sqlite3.Connection, category: str | None = None) -> list[dict[str, Any]]:
    if category is None:
        rows = conn.execute(_SELECT + " ORDER BY p.sku").fetchall()
    else:
        sql = _SELECT + " WHERE p.category = ? ORDER BY p.sku"
        rows = conn.execute(sql, (category,)).fetchall()
    return [_product(row) for row in rows]


def get_product(conn: sqlite3.Connection, sku: str) -> dict[str, Any]:
    row = conn.execute(_SELECT + " WHERE p.sku = ?", (sku,)).fetchone()
    if row is None:
        raise NotFound(f"unknown sku '{sku}'", sku=sku)
    return _product(row)
