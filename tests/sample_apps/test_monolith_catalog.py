"""The monolith's catalog, inventory and customer endpoints, over real HTTP."""

from __future__ import annotations

import pytest

from legacy_monolith.seed import CUSTOMERS, PRODUCTS

from .calls import Client, json_of

VOLATILE = ("generated_at", "server", "request_id")


async def test_list_products_returns_the_seed_in_sku_order(monolith: Client) -> None:
    status, body = await json_of(monolith, "GET", "/api/products")
    assert status == 200
    assert body["count"] == len(PRODUCTS) == 12
    assert [p["sku"] for p in body["products"]] == [p.sku for p in PRODUCTS]
    assert body["products"][0] == {
        "sku": "SKU-1001",
        "name": "Espresso Machine",
        "category": "kitchen",
        "price_cents": 24900,
        "currency": "EUR",
        "weight_grams": 6200,
        "in_stock": True,
    }
    assert all(key in body for key in VOLATILE)
    assert body["server"] == "monolith-test"


async def test_list_products_filters_by_category(monolith: Client) -> None:
    _, body = await json_of(monolith, "GET", "/api/products", params={"category": "outdoor"})
    assert {p["category"] for p in body["products"]} == {"outdoor"}
    assert body["count"] == 4


async def test_out_of_stock_product_is_flagged(monolith: Client) -> None:
    _, body = await json_of(monolith, "GET", "/api/products/SKU-1012")
    assert body["product"]["in_stock"] is False


async def test_unknown_product_is_404_json(monolith: Client) -> None:
    status, body = await json_of(monolith, "GET", "/api/products/SKU-0000")
    assert status == 404
    assert body["error"] == "not_found"
    assert body["sku"] == "SKU-0000"


async def test_volatile_fields_change_and_request_id_is_echoed(monolith: Client) -> None:
    async with monolith.get("/api/products/SKU-1001", headers={"X-Request-Id": "abc"}) as resp:
        first = await resp.json()
        assert resp.headers["X-Request-Id"] == "abc"
        assert resp.headers["X-Served-By"] == "monolith-test"
    _, second = await json_of(monolith, "GET", "/api/products/SKU-1001")
    assert first["request_id"] == "abc"
    assert second["request_id"].startswith("REQ-")
    assert first["generated_at"] != second["generated_at"]
    assert first["product"] == second["product"]


async def test_inventory_reserve_and_release(monolith: Client) -> None:
    status, body = await json_of(
        monolith, "POST", "/api/inventory/SKU-1001/reservations", json={"qty": 3}
    )
    assert status == 201
    reservation = body["reservation"]
    assert reservation["status"] == "active"
    assert body["item"] | {"updated_at": None} == {
        "sku": "SKU-1001",
        "on_hand": 15,
        "reserved": 3,
        "available": 12,
        "updated_at": None,
    }
    status, body = await json_of(
        monolith, "DELETE", f"/api/inventory/reservations/{reservation['id']}"
    )
    assert status == 200
    assert body["reservation"]["status"] == "released"
    assert body["item"]["available"] == 15
    status, body = await json_of(
        monolith, "DELETE", f"/api/inventory/reservations/{reservation['id']}"
    )
    assert (status, body["error"]) == (409, "reservation_not_active")


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "error"),
    [
        ("/api/inventory/SKU-1001/reservations", {"json": {"qty": 16}}, 409, "insufficient_stock"),
        ("/api/inventory/SKU-1012/reservations", {"json": {"qty": 1}}, 409, "insufficient_stock"),
        ("/api/inventory/SKU-1001/reservations", {"json": {"qty": 0}}, 422, "invalid_quantity"),
        ("/api/inventory/SKU-1001/reservations", {"json": {"qty": "2"}}, 400, "invalid_request"),
        ("/api/inventory/SKU-1001/reservations", {"json": {"qty": True}}, 400, "invalid_request"),
        ("/api/inventory/SKU-1001/reservations", {"data": b"{nope"}, 400, "invalid_request"),
        ("/api/inventory/SKU-1001/reservations", {"json": [1]}, 400, "invalid_request"),
        ("/api/inventory/SKU-9999/reservations", {"json": {"qty": 1}}, 404, "not_found"),
    ],
    ids=[
        "more-than-stock",
        "zero-stock",
        "zero-qty",
        "string-qty",
        "bool-qty",
        "malformed-json",
        "not-an-object",
        "unknown-sku",
    ],
)
async def test_reservation_errors(
    monolith: Client, path: str, kwargs: dict[str, object], status: int, error: str
) -> None:
    got_status, body = await json_of(monolith, "POST", path, **kwargs)
    assert (got_status, body["error"]) == (status, error)
    _, after = await json_of(monolith, "GET", "/api/inventory")
    assert all(item["reserved"] == 0 for item in after["items"])


async def test_release_unknown_reservation_is_404(monolith: Client) -> None:
    status, body = await json_of(monolith, "DELETE", "/api/inventory/reservations/RSV-NOPE")
    assert (status, body["error"]) == (404, "not_found")


async def test_customers_list_get_create(monolith: Client) -> None:
    _, body = await json_of(monolith, "GET", "/api/customers")
    assert [c["id"] for c in body["customers"]] == [c.id for c in CUSTOMERS]
    status, body = await json_of(
        monolith, "POST", "/api/customers", json={"name": "Barbara Liskov", "email": "B@x.org"}
    )
    assert status == 201
    assert body["customer"]["id"] == "CUST-0005"
    assert body["customer"]["email"] == "b@x.org"
    status, body = await json_of(monolith, "GET", "/api/customers/CUST-0005")
    assert (status, body["customer"]["name"]) == (200, "Barbara Liskov")


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ({"email": "x@y.z"}, 400, "invalid_request"),
        ({"name": "X", "email": "not-an-email"}, 422, "invalid_email"),
        ({"name": "X", "email": "ada@example.com"}, 409, "duplicate_email"),
    ],
    ids=["missing-name", "bad-email", "duplicate-email"],
)
async def test_customer_errors(
    monolith: Client, payload: dict[str, str], status: int, error: str
) -> None:
    got, body = await json_of(monolith, "POST", "/api/customers", json=payload)
    assert (got, body["error"]) == (status, error)


async def test_unknown_customer_route_and_method(monolith: Client) -> None:
    assert (await json_of(monolith, "GET", "/api/customers/CUST-9999"))[0] == 404
    status, body = await json_of(monolith, "GET", "/api/nothing-here")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await json_of(monolith, "DELETE", "/api/products")
    assert (status, body["error"]) == (405, "method_not_allowed")


async def test_health(monolith: Client) -> None:
    status, body = await json_of(monolith, "GET", "/health/live")
    assert (status, body["status"]) == (200, "live")
    status, body = await json_of(monolith, "GET", "/health/ready")
    assert (status, body["checks"]) == (200, {"database": "ok"})
