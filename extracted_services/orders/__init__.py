"""The orders service: order placement as a saga over the inventory service and the monolith.

Start it with ``python -m extracted_services.orders --port 8003 --db PATH
--inventory-url http://127.0.0.1:8002 --payments-url http://127.0.0.1:8001``.
"""

from __future__ import annotations

from extracted_services.orders.app import Upstreams, create_app

__all__ = ["Upstreams", "create_app"]
