"""The monolith's one database: every module's tables, side by side.

This is the legacy shape on purpose: catalog, inventory, orders, payments,
shipping and notifications all read and write these tables directly, and an
order placement touches six of them in one transaction. ``seed_database`` fills
the catalog, stock and customers from ``legacy_monolith.seed``.
"""

from __future__ import annotations

import sqlite3

from legacy_monolith.seed import CURRENCY, CUSTOMERS, PRODUCTS, SEEDED_AT

__all__ = ["SCHEMA", "seed_database"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    weight_grams INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS inventory (
    sku TEXT PRIMARY KEY REFERENCES products (sku),
    on_hand INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0),
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL REFERENCES products (sku),
    qty INTEGER NOT NULL,
    status TEXT NOT NULL,
    order_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id),
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
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    order_id TEXT,
    amount_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    card_last4 TEXT NOT NULL,
    decline_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shipments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    carrier TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    cost_cents INTEGER NOT NULL,
    weight_grams INTEGER NOT NULL,
    items_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    reference TEXT,
    created_at TEXT NOT NULL
)
"""


def seed_database(conn: sqlite3.Connection) -> None:
    for product in PRODUCTS:
        conn.execute(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)",
            (
                product.sku,
                product.name,
                product.category,
                product.price_cents,
                CURRENCY,
                product.weight_grams,
            ),
        )
        conn.execute(
            "INSERT INTO inventory VALUES (?, ?, 0, ?)", (product.sku, product.stock, SEEDED_AT)
        )
    for customer in CUSTOMERS:
        conn.execute(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            (customer.id, customer.name, customer.email, SEEDED_AT),
        )
