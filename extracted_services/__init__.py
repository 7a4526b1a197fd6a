"""Services extracted from the legacy monolith, each with its own SQLite database.

``extracted_services.inventory`` owns stock and reservations;
``extracted_services.orders`` places orders as a saga over HTTP;
``extracted_services.faults`` is the run-time fault injection all sample apps share.
See ``extracted_services/README.md`` for how they stay in step with the monolith.
"""
