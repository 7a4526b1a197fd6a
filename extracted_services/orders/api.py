"""The orders service's HTTP API: ``POST /api/orders``, ``GET /api/orders[/{id}]``.

A placed order answers 201 ``{"order": ...}`` as the monolith does. An order the
saga could not place still exists (its ``state`` and ``saga`` tell why) and is
returned inside the error body: 409 ``insufficient_stock``, 402
``payment_declined``, 502 ``order_failed``, 500 ``compensation_failed``.
Validation errors (400/422) match the monolith's, and nothing is stored for them.
"""

from __future__ import annotations

from aiohttp import web

from extracted_services.orders.placement import OrderPlacement, failure_status, order_state
from extracted_services.orders.store import OrderStore
from legacy_monolith.contract import parse_order_request
from legacy_monolith.envelope import json_response, read_json_object
from legacy_monolith.sqlite import DATABASE_KEY

__all__ = ["PLACEMENT_KEY", "routes"]

PLACEMENT_KEY = web.AppKey("placement", OrderPlacement)

routes = web.RouteTableDef()


def _store(request: web.Request) -> OrderStore:
    return OrderStore(request.app[DATABASE_KEY])


@routes.post("/api/orders")
async def place_order(request: web.Request) -> web.Response:
    order_request = parse_order_request(await read_json_object(request))
    order_id, result = await request.app[PLACEMENT_KEY].place(order_request)
    order = _store(request).get(order_id)
    if result.completed:
        return json_response(request, {"order": order}, status=201)
    failure = failure_status(order_state(result), result)
    body = {
        "error": failure.code,
        "message": f"order not placed: {result.failed_step} {result.failure}",
        "order": order,
    }
    return json_response(request, body, status=failure.status)


@routes.get("/api/orders")
async def list_orders(request: web.Request) -> web.Response:
    items = _store(request).list_orders(
        request.query.get("customer_id"), request.query.get("state")
    )
    return json_response(request, {"orders": items, "count": len(items)})


@routes.get("/api/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    return json_response(request, {"order": _store(request).get(request.match_info["order_id"])})
