"""Request-body parsing that defines the write API's contract, with no I/O.

The monolith and the extracted services parse the same bodies with these
functions, so the same malformed input yields the same status and error code
everywhere: a missing field or a wrong JSON type is 400 ``invalid_request``; a
well-typed but unacceptable value (a quantity of zero, a card number of letters)
is 422.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from legacy_monolith.envelope import BadRequest, Unprocessable

__all__ = [
    "DEFAULT_CARD",
    "LineRequest",
    "OrderRequest",
    "optional_str",
    "parse_card",
    "parse_items",
    "parse_order_request",
    "parse_reservation_request",
    "required_int",
    "required_str",
]

DEFAULT_CARD = "4242424242424242"
MAX_QTY = 10_000


@dataclass(frozen=True, slots=True)
class LineRequest:
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class OrderRequest:
    customer_id: str
    items: tuple[LineRequest, ...]
    card_number: str


def required_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"'{field}' is required and must be a non-empty string", field=field)
    return value.strip()


def optional_str(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{field}' must be a string", field=field)
    return value


def required_int(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    # bool is an int subclass; `true` is not a quantity.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"'{field}' is required and must be an integer", field=field)
    return value


def _quantity(body: dict[str, Any], field: str = "qty") -> int:
    qty = required_int(body, field)
    if not 0 < qty <= MAX_QTY:
        raise Unprocessable(
            f"'{field}' must be between 1 and {MAX_QTY}", code="invalid_quantity", field=field
        )
    return qty


def parse_reservation_request(body: dict[str, Any]) -> tuple[int, str | None]:
    """``{"qty": 2, "order_id": "..."?}`` -> ``(qty, order_id)``."""
    return _quantity(body), optional_str(body, "order_id")


def parse_items(body: dict[str, Any]) -> tuple[LineRequest, ...]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise BadRequest("'items' must be a non-empty list", field="items")
    lines: list[LineRequest] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"items[{index}] must be an object", field=f"items[{index}]")
        lines.append(LineRequest(required_str(item, "sku"), _quantity(item)))
    skus = [line.sku for line in lines]
    duplicates = sorted({sku for sku in skus if skus.count(sku) > 1})
    if duplicates:
        raise Unprocessable(
            "each sku may appear once per order", code="duplicate_sku", skus=duplicates
        )
    return tuple(lines)


def parse_card(body: dict[str, Any]) -> str:
    card = optional_str(body, "card_number")
    if card is None:
        return DEFAULT_CARD
    digits = card.replace(" ", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise Unprocessable("'card_number' must be 12 to 19 digits", code="invalid_card")
    return digits


def parse_order_request(body: dict[str, Any]) -> OrderRequest:
    """``{"customer_id", "items": [{"sku", "qty"}], "card_number"?}``."""
    return OrderRequest(required_str(body, "customer_id"), parse_items(body), parse_card(body))
