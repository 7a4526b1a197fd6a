"""Deterministic seed data shared by the monolith and the extracted services.

Every app that owns a copy of this data (the monolith's single database, the
inventory service's stock table) seeds it from here on first start, so a fresh
monolith and a fresh service answer identically for the same request. The data
is plain frozen values: changing it changes every app's first-start state at once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CURRENCY", "CUSTOMERS", "PRODUCTS", "SEEDED_AT", "SeedCustomer", "SeedProduct"]

CURRENCY = "EUR"
SEEDED_AT = "2019-03-01T00:00:00.000000Z"


@dataclass(frozen=True, slots=True)
class SeedProduct:
    sku: str
    name: str
    category: str
    price_cents: int
    weight_grams: int
    stock: int


@dataclass(frozen=True, slots=True)
class SeedCustomer:
    id: str
    name: str
    email: str


PRODUCTS: tuple[SeedProduct, ...] = (
    SeedProduct("SKU-1001", "Espresso Machine", "kitchen", 24900, 6200, 15),
    SeedProduct("SKU-1002", "Burr Coffee Grinder", "kitchen", 8900, 2100, 30),
    SeedProduct("SKU-1003", "Pour-Over Kettle", "kitchen", 4500, 900, 40),
    SeedProduct("SKU-1004", "Cast Iron Skillet", "kitchen", 3900, 2700, 25),
    SeedProduct("SKU-1005", "Chef's Knife", "kitchen", 7900, 250, 50),
    SeedProduct("SKU-1006", "Trail Running Shoes", "outdoor", 12900, 600, 20),
    SeedProduct("SKU-1007", "Two-Person Tent", "outdoor", 19900, 2400, 8),
    SeedProduct("SKU-1008", "Insulated Water Bottle", "outdoor", 2900, 400, 100),
    SeedProduct("SKU-1009", "Headlamp", "outdoor", 3400, 120, 60),
    SeedProduct("SKU-1010", "Mechanical Keyboard", "electronics", 11900, 1100, 12),
    SeedProduct("SKU-1011", "Noise-Cancelling Headphones", "electronics", 27900, 300, 5),
    SeedProduct("SKU-1012", "USB-C Charger", "electronics", 3900, 150, 0),
)

CUSTOMERS: tuple[SeedCustomer, ...] = (
    SeedCustomer("CUST-0001", "Ada Lovelace", "ada@example.com"),
    SeedCustomer("CUST-0002", "Alan Turing", "alan@example.com"),
    SeedCustomer("CUST-0003", "Grace Hopper", "grace@example.com"),
    SeedCustomer("CUST-0004", "Edsger Dijkstra", "edsger@example.com"),
)
