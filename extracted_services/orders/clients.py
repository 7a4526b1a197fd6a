"""HTTP adapters from the orders service to the data it does not own.

``InventoryClient`` talks to the inventory service; ``MonolithClient`` to the
monolith's catalog, customers, payments and shipping APIs. Every call maps the
answer onto the saga's vocabulary: a business refusal (409 out of stock, 402
declined) raises ``StepRejected``; any other non-2xx answer, a timeout or a
refused connection raises ``StepFailed``. Undo calls are idempotent from the
saga's point of view: releasing an already released reservation, refunding an
already refunded payment or cancelling a cancelled shipment counts as done.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from extracted_services.orders.saga import StepFailed, StepRejected

__all__ = ["InventoryClient", "MonolithClient", "UpstreamClient"]

JsonObject = dict[str, Any]


class UpstreamClient:
    """One base URL over a shared ``aiohttp.ClientSession``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, name: str) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self.name = name

    async def call(
        self, method: str, path: str, body: JsonObject | None = None
    ) -> tuple[int, JsonObject]:
        """Status and JSON object body; ``StepFailed`` when no usable answer came back."""
        try:
            async with self._session.request(method, self._base_url + path, json=body) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                return resp.status, data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StepFailed(f"{self.name} unreachable: {type(exc).__name__}") from exc

    def failed(self, action: str, status: int, data: JsonObject) -> StepFailed:
        return StepFailed(f"{self.name} {action} answered {status} {data.get('error', '')}".strip())


class InventoryClient(UpstreamClient):
    async def reserve(self, sku: str, qty: int, order_id: str) -> str:
        body = {"qty": qty, "order_id": order_id}
        status, data = await self.call("POST", f"/api/inventory/{sku}/reservations", body)
        if status == 201:
            return str(data["reservation"]["id"])
        if status == 409 and data.get("error") == "insufficient_stock":
            raise StepRejected(
                f"insufficient stock for {sku}: requested {qty}, available {data.get('available')}"
            )
        raise self.failed("reserve", status, data)

    async def release(self, reservation_id: str) -> None:
        status, data = await self.call("DELETE", f"/api/inventory/reservations/{reservation_id}")
        if status == 200 or (status == 409 and data.get("error") == "reservation_not_active"):
            return
        raise self.failed("release", status, data)


class MonolithClient(UpstreamClient):
    async def customer_exists(self, customer_id: str) -> bool:
        status, data = await self.call("GET", f"/api/customers/{customer_id}")
        if status in (200, 404):
            return status == 200
        raise self.failed("customer lookup", status, data)

    async def unit_price(self, sku: str) -> int | None:
        """The product's price in cents, or None for an unknown sku."""
        status, data = await self.call("GET", f"/api/products/{sku}")
        if status == 404:
            return None
        if status == 200:
            return int(data["product"]["price_cents"])
        raise self.failed("product lookup", status, data)

    async def charge(self, customer_id: str, amount_cents: int, card: str, order_id: str) -> str:
        body = {
            "customer_id": customer_id,
            "amount_cents": amount_cents,
            "card_number": card,
            "order_id": order_id,
        }
        status, data = await self.call("POST", "/api/payments", body)
        if status == 201:
            return str(data["payment"]["id"])
        if status == 402:
            raise StepRejected(f"payment declined: {data.get('reason', 'unknown')}")
        raise self.failed("charge", status, data)

    async def refund(self, payment_id: str) -> None:
        status, data = await self.call("POST", f"/api/payments/{payment_id}/refund")
        if status == 200 or (status == 409 and data.get("status") == "refunded"):
            return
        raise self.failed("refund", status, data)

    async def create_shipment(self, order_id: str, items: list[JsonObject]) -> str:
        body = {"order_id": order_id, "items": items}
        status, data = await self.call("POST", "/api/shipping/shipments", body)
        if status == 201:
            return str(data["shipment"]["id"])
        raise self.failed("shipment", status, data)

    async def cancel_shipment(self, shipment_id: str) -> None:
        status, data = await self.call("POST", f"/api/shipping/shipments/{shipment_id}/cancel")
        if status == 200 or (status == 409 and data.get("status") == "cancelled"):
            return
        raise self.failed("shipment cancel", status, data)
