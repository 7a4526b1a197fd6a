"""The inventory service's HTTP API: the monolith's ``/api/inventory`` contract.

Same paths, bodies, status codes and error codes as ``legacy_monolith.api`` for
the same requests; only the volatile fields (timestamps, generated ids, server,
request id) differ. That is what lets strangler shadow and then move
``/api/inventory`` without clients noticing.
"""

from __future__ import annotations

from aiohttp import web

from extracted_services.inventory.store import StockStore
from legacy_monolith.contract import parse_reservation_request
from legacy_monolith.envelope import json_response, read_json_object
from legacy_monolith.sqlite import DATABASE_KEY

__all__ = ["routes"]

routes = web.RouteTableDef()


def _store(request: web.Request) -> StockStore:
    return StockStore(request.app[DATABASE_KEY])


@routes.get("/api/inventory")
async def list_inventory(request: web.Request) -> web.Response:
    items = _store(request).items()
    return json_response(request, {"items": items, "count": len(items)})


@routes.get("/api/inventory/{sku}")
async def get_inventory_item(request: web.Request) -> web.Response:
    return json_response(request, {"item": _store(request).item(request.match_info["sku"])})


@routes.post("/api/inventory/{sku}/reservations")
async def reserve_stock(request: web.Request) -> web.Response:
    qty, order_id = parse_reservation_request(await read_json_object(request))
    store = _store(request)
    reservation = store.reserve(request.match_info["sku"], qty, order_id)
    item = store.item(reservation["sku"])
    return json_response(request, {"reservation": reservation, "item": item}, status=201)


@routes.delete("/api/inventory/reservations/{reservation_id}")
async def release_stock(request: web.Request) -> web.Response:
    store = _store(request)
    reservation = store.release(request.match_info["reservation_id"])
    item = store.item(reservation["sku"])
    return json_response(request, {"reservation": reservation, "item": item})
