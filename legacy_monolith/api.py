"""The monolith's JSON REST API: thin handlers over the domain modules.

Each handler reads the one connection, runs the domain call (inside a
transaction when it writes) and wraps the result in the shared envelope. Lists
answer ``{"<plural>": [...], "count": n}``, single resources ``{"<singular>": {...}}``.
"""

from __future__ import annotations

from aiohttp import web

from legacy_monolith import catalog, customers, inventory, notifications, orders, payments, shipping
from legacy_monolith.contract import (
    parse_items,
    parse_order_request,
    parse_reservation_request,
    required_str,
)
from legacy_monolith.envelope import BadRequest, json_response, read_json_object
from legacy_monolith.sqlite import DATABASE_KEY, transaction

__all__ = ["routes"]

routes = web.RouteTableDef()


def _query_int(request: web.Request, name: str) -> int:
    raw = request.query.get(name)
    if raw is None:
        raise BadRequest(f"query parameter '{name}' is required", field=name)
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer", field=name) from None


@routes.get("/api/products")
async def list_products(request: web.Request) -> web.Response:
    items = catalog.list_products(request.app[DATABASE_KEY], request.query.get("category"))
    return json_response(request, {"products": items, "count": len(items)})


@routes.get("/api/products/{sku}")
async def get_product(request: web.Request) -> web.Response:
    product = catalog.get_product(request.app[DATABASE_KEY], request.match_info["sku"])
    return json_response(request, {"product": product})


@routes.get("/api/inventory")
async def list_inventory(request: web.Request) -> web.Response:
    items = inventory.list_items(request.app[DATABASE_KEY])
    return json_response(request, {"items": items, "count": len(items)})


@routes.get("/api/inventory/{sku}")
async def get_inventory_item(request: web.Request) -> web.Response:
    item = inventory.get_item(request.app[DATABASE_KEY], request.match_info["sku"])
    return json_response(request, {"item": item})


@routes.post("/api/inventory/{sku}/reservations")
async def reserve_stock(request: web.Request) -> web.Response:
    qty, order_id = parse_reservation_request(await read_json_object(request))
    with transaction(request.app[DATABASE_KEY]) as conn:
        reservation = inventory.reserve(conn, request.match_info["sku"], qty, order_id)
        item = inventory.get_item(conn, reservation["sku"])
    return json_response(request, {"reservation": reservation, "item": item}, status=201)


@routes.delete("/api/inventory/reservations/{reservation_id}")
async def release_stock(request: web.Request) -> web.Response:
    with transaction(request.app[DATABASE_KEY]) as conn:
        reservation = inventory.release(conn, request.match_info["reservation_id"])
        item = inventory.get_item(conn, reservation["sku"])
    return json_response(request, {"reservation": reservation, "item": item})


@routes.get("/api/customers")
async def list_customers(request: web.Request) -> web.Response:
    items = customers.list_customers(request.app[DATABASE_KEY])
    return json_response(request, {"customers": items, "count": len(items)})


@routes.post("/api/customers")
async def create_customer(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    with transaction(request.app[DATABASE_KEY]) as conn:
        customer = customers.create_customer(conn, body)
    return json_response(request, {"customer": customer}, status=201)


@routes.get("/api/customers/{customer_id}")
async def get_customer(request: web.Request) -> web.Response:
    customer = customers.get_customer(request.app[DATABASE_KEY], request.match_info["customer_id"])
    return json_response(request, {"customer": customer})


@routes.get("/api/orders")
async def list_orders(request: web.Request) -> web.Response:
    items = orders.list_orders(
        request.app[DATABASE_KEY], request.query.get("customer_id"), request.query.get("state")
    )
    return json_response(request, {"orders": items, "count": len(items)})


@routes.post("/api/orders")
async def place_order(request: web.Request) -> web.Response:
    order_request = parse_order_request(await read_json_object(request))
    with transaction(request.app[DATABASE_KEY]) as conn:
        order = orders.place_order(conn, order_request)
    return json_response(request, {"order": order}, status=201)


@routes.get("/api/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    order = orders.get_order(request.app[DATABASE_KEY], request.match_info["order_id"])
    return json_response(request, {"order": order})


@routes.patch("/api/orders/{order_id}")
async def update_order(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    with transaction(request.app[DATABASE_KEY]) as conn:
        order = orders.update_order(conn, request.match_info["order_id"], body)
    return json_response(request, {"order": order})


@routes.post("/api/payments")
async def charge(request: web.Request) -> web.Response:
    charge_request = payments.parse_charge_request(await read_json_object(request))
    with transaction(request.app[DATABASE_KEY]) as conn:
        payment = payments.charge(conn, charge_request)
    if payment["status"] == "declined":
        declined = payments.PaymentDeclined(
            f"payment declined: {payment['decline_reason']}",
            reason=payment["decline_reason"],
            payment=payment,
        )
        return json_response(request, declined.body(), status=declined.status)
    return json_response(request, {"payment": payment}, status=201)


@routes.get("/api/payments/{payment_id}")
async def get_payment(request: web.Request) -> web.Response:
    payment = payments.get_payment(request.app[DATABASE_KEY], request.match_info["payment_id"])
    return json_response(request, {"payment": payment})


@routes.post("/api/payments/{payment_id}/refund")
async def refund(request: web.Request) -> web.Response:
    with transaction(request.app[DATABASE_KEY]) as conn:
        payment = payments.refund(conn, request.match_info["payment_id"])
    return json_response(request, {"payment": payment})


@routes.get("/api/shipping/quote")
async def shipping_quote(request: web.Request) -> web.Response:
    sku = request.query.get("sku")
    if not sku:
        raise BadRequest("query parameter 'sku' is required", field="sku")
    qty = parse_reservation_request({"qty": _query_int(request, "qty")})[0]
    quote = shipping.quote(request.app[DATABASE_KEY], sku, qty)
    return json_response(request, {"quote": quote})


@routes.post("/api/shipping/shipments")
async def create_shipment(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    order_id, lines = required_str(body, "order_id"), parse_items(body)
    with transaction(request.app[DATABASE_KEY]) as conn:
        shipment = shipping.create_shipment(conn, order_id, lines)
    return json_response(request, {"shipment": shipment}, status=201)


@routes.get("/api/shipping/shipments/{shipment_id}")
async def get_shipment(request: web.Request) -> web.Response:
    shipment = shipping.get_shipment(request.app[DATABASE_KEY], request.match_info["shipment_id"])
    return json_response(request, {"shipment": shipment})


@routes.post("/api/shipping/shipments/{shipment_id}/cancel")
async def cancel_shipment(request: web.Request) -> web.Response:
    with transaction(request.app[DATABASE_KEY]) as conn:
        shipment = shipping.cancel_shipment(conn, request.match_info["shipment_id"])
    return json_response(request, {"shipment": shipment})


@routes.get("/api/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    items = notifications.list_notifications(
        request.app[DATABASE_KEY], request.query.get("customer_id")
    )
    return json_response(request, {"notifications": items, "count": len(items)})
