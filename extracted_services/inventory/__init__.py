"""The inventory service: stock and reservations, extracted from the monolith.

Serves the monolith's ``/api/inventory`` contract from its own SQLite database.
Start it with ``python -m extracted_services.inventory --port 8002 --db PATH``.
"""

from __future__ import annotations

from extracted_services.inventory.app import create_app

__all__ = ["create_app"]
