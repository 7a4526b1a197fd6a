"""A legacy e-commerce monolith: the application strangler migrates away from.

One aiohttp app, one SQLite database, six modules (catalog, inventory, orders,
payments, shipping, notifications) that call each other in-process and share
tables. Start it with ``python -m legacy_monolith --port 8001 --db PATH`` or
``create_app(db_path)``.
"""

from __future__ import annotations

from legacy_monolith.app import create_app

__all__ = ["create_app"]
