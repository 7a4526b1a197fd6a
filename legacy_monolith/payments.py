"""Payments: card charges and refunds.

A charge is either ``captured`` or ``declined`` (test cards as in most payment
sandboxes: ``4000000000000002`` is declined, ``4000000000009995`` has
insufficient funds; any other well-formed number is captured). A declined
charge is stored too, so ``GET /api/payments/{id}`` can show it. Only a captured
payment can be refunded, once.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from legacy_monolith.contract import optional_str, parse_card, required_int, required_str
from legacy_monolith.customers import get_customer
from legacy_monolith.envelope import (
    ApiError,
    Conflict,
    NotFound,
    Unprocessable,
    new_id,
    utc_now,
)
from legacy_monolith.seed import CURRENCY

__all__ = [
    "ChargeRequest",
    "PaymentDeclined",
    "charge",
    "get_payment",
    "parse_charge_request",
    "refund",
]

DECLINED_CARDS = {"4000000000000002": "card_declined", "4000000000009995": "insufficient_funds"}


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    customer_id: str
    amount_cents: int
    card_number: str
    order_id: str | None = None


def parse_charge_request(body: dict[str, Any]) -> ChargeRequest:
    customer_id = required_str(body, "customer_id")
    amount = required_int(body, "amount_cents")
    if amount <= 0:
        raise Unprocessable("'amount_cents' must be positive", code="invalid_amount")
    currency = optional_str(body, "currency")
    if currency is not None and currency != CURRENCY:
        raise Unprocessable(
            f"unsupported currency '{currency}' (known: {CURRENCY})", code="invalid_currency"
        )
    return ChargeRequest(customer_id, amount, parse_card(body), optional_str(body, "order_id"))


def _payment(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "customer_id": row["customer_id"],
        "order_id": row["order_id"],
        "amount_cents": row["amount_cents"],
        "currency": row["currency"],
        "status": row["status"],
        "card_last4": row["card_last4"],
        "decline_reason": row["decline_reason"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def get_payment(conn: sqlite3.Connection, payment_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM payments WHERE id = ?", (payment_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown payment '{payment_id}'", payment_id=payment_id)
    return _payment(row)


def charge(conn: sqlite3.Connection, request: ChargeRequest) -> dict[str, Any]:
    """Store and return the payment; the caller checks ``status`` for a decline."""
    try:
        get_customer(conn, request.customer_id)
    except NotFound:
        raise Unprocessable(
            f"unknown customer '{request.customer_id}'",
            code="unknown_customer",
            customer_id=request.customer_id,
        ) from None
    decline_reason = DECLINED_CARDS.get(request.card_number)
    status = "declined" if decline_reason else "captured"
    now = utc_now()
    payment_id = new_id("PAY")
    conn.execute(
        "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            payment_id,
            request.customer_id,
            request.order_id,
            request.amount_cents,
            CURRENCY,
            status,
            request.card_number[-4:],
            decline_reason,
            now,
            now,
        ),
    )
    return get_payment(conn, payment_id)


def refund(conn: sqlite3.Connection, payment_id: str) -> dict[str, Any]:
    payment = get_payment(conn, payment_id)
    if payment["status"] != "captured":
        raise Conflict(
            f"payment '{payment_id}' is {payment['status']}",
            code="payment_not_refundable",
            payment_id=payment_id,
            status=payment["status"],
        )
    conn.execute(
        "UPDATE payments SET status = 'refunded', updated_at = ? WHERE id = ?",
        (utc_now(), payment_id),
    )
    return get_payment(conn, payment_id)


class PaymentDeclined(ApiError):
    status = 402
    code = "payment_declined"
