"""Placing an order: price it, then run the saga reserve -> charge -> ship -> confirm.

What the monolith does in one database transaction, the orders service does
across three owners: stock at the inventory service, payment and shipment at
the monolith, the order in its own database. Each remote step returns its undo
(release the reservation, refund the payment, cancel the shipment), and the
``Saga`` runs those in reverse when a later step fails. ``order_state`` and
``failure_status`` turn a ``SagaResult`` into the order's ``state`` and the HTTP
answer; both are pure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from extracted_services.orders.clients import InventoryClient, MonolithClient
from extracted_services.orders.saga import Compensation, Saga, SagaResult, SagaStep, StepFailed
from extracted_services.orders.store import OrderDraft, OrderStore, PricedLine
from legacy_monolith.contract import OrderRequest
from legacy_monolith.envelope import ApiError, Unprocessable, new_id

__all__ = [
    "FailureStatus",
    "OrderPlacement",
    "UpstreamUnavailable",
    "failure_status",
    "order_state",
]


class UpstreamUnavailable(ApiError):
    status = 502
    code = "upstream_unavailable"


def order_state(result: SagaResult) -> str:
    if result.completed:
        return "placed"
    if result.compensation_failed:
        return "compensation_failed"
    if result.failed_step == "reserve_stock" and result.rejected:
        return "rejected_out_of_stock"
    if result.failed_step == "charge_payment":
        return "payment_failed_compensated"
    return "failed_compensated"


@dataclass(frozen=True, slots=True)
class FailureStatus:
    status: int
    code: str


def failure_status(state: str, result: SagaResult) -> FailureStatus:
    """The HTTP status and error code for an order that was not placed."""
    if state == "rejected_out_of_stock":
        return FailureStatus(409, "insufficient_stock")
    if state == "payment_failed_compensated" and result.rejected:
        return FailureStatus(402, "payment_declined")
    if state == "compensation_failed":
        return FailureStatus(500, "compensation_failed")
    return FailureStatus(502, "order_failed")


class OrderPlacement:
    def __init__(
        self,
        store: OrderStore,
        inventory: InventoryClient,
        payments: MonolithClient,
        monolith: MonolithClient,
    ) -> None:
        self._store = store
        self._inventory = inventory
        self._payments = payments
        self._monolith = monolith

    async def price(self, request: OrderRequest) -> OrderDraft:
        """Look up the customer and prices at the monolith; nothing is changed yet."""
        try:
            if not await self._monolith.customer_exists(request.customer_id):
                raise Unprocessable(
                    f"unknown customer '{request.customer_id}'",
                    code="unknown_customer",
                    customer_id=request.customer_id,
                )
            lines = []
            for line in request.items:
                price = await self._monolith.unit_price(line.sku)
                if price is None:
                    raise Unprocessable(
                        f"unknown sku '{line.sku}'", code="unknown_sku", sku=line.sku
                    )
                lines.append(PricedLine(line.sku, line.qty, price))
        except StepFailed as exc:
            raise UpstreamUnavailable(str(exc)) from exc
        return OrderDraft(new_id("ORD"), request.customer_id, request.card_number, tuple(lines))

    def saga(self, draft: OrderDraft) -> Saga:
        steps = [self._reserve_step(draft, line) for line in draft.lines]
        steps += [
            SagaStep(
                "charge_payment",
                self._charge(draft),
                "refund_payment",
                f"{draft.total_cents} cents",
            ),
            SagaStep("create_shipment", self._ship(draft), "cancel_shipment", draft.id),
            SagaStep("confirm_order", self._confirm(draft), "none"),
        ]
        return Saga(steps)

    async def place(self, request: OrderRequest) -> tuple[str, SagaResult]:
        draft = await self.price(request)
        self._store.create_pending(draft)
        result = await self.saga(draft).run()
        self._store.finish(draft, order_state(result), result.records)
        return draft.id, result

    def _reserve_step(self, draft: OrderDraft, line: PricedLine) -> SagaStep:
        async def reserve() -> Compensation:
            reservation_id = await self._inventory.reserve(line.sku, line.qty, draft.id)
            draft.reservation_ids[line.sku] = reservation_id

            async def release() -> None:
                await self._inventory.release(reservation_id)

            return release

        return SagaStep("reserve_stock", reserve, "release_reservation", f"{line.sku} x{line.qty}")

    def _charge(self, draft: OrderDraft) -> Callable[[], Awaitable[Compensation]]:
        async def charge() -> Compensation:
            payment_id = await self._payments.charge(
                draft.customer_id, draft.total_cents, draft.card_number, draft.id
            )
            draft.payment_id = payment_id

            async def refund() -> None:
                await self._payments.refund(payment_id)

            return refund

        return charge

    def _ship(self, draft: OrderDraft) -> Callable[[], Awaitable[Compensation]]:
        async def ship() -> Compensation:
            items = [{"sku": line.sku, "qty": line.qty} for line in draft.lines]
            shipment_id = await self._monolith.create_shipment(draft.id, items)
            draft.shipment_id = shipment_id

            async def cancel() -> None:
                await self._monolith.cancel_shipment(shipment_id)

            return cancel

        return ship

    def _confirm(self, draft: OrderDraft) -> Callable[[], Awaitable[None]]:
        async def confirm() -> None:
            self._store.finish(draft, "placed", ())

        return confirm
