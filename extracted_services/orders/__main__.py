"""``python -m extracted_services.orders --port 8003 --db PATH --inventory-url URL ...``."""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from extracted_services.orders.app import Upstreams, create_app

DEFAULT_PORT = 8003
DEFAULT_DB = str(Path(tempfile.gettempdir()) / "strangler-samples" / "orders-service.sqlite3")


def build_parser() -> argparse.ArgumentParser:
    defaults = Upstreams()
    parser = argparse.ArgumentParser(
        prog="python -m extracted_services.orders", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument("--db", default=DEFAULT_DB, help="SQLite file (default: %(default)s)")
    parser.add_argument(
        "--inventory-url", default=defaults.inventory_url, help="default: %(default)s"
    )
    parser.add_argument(
        "--payments-url", default=defaults.payments_url, help="monolith payments API base URL"
    )
    parser.add_argument(
        "--monolith-url", help="monolith catalog, customers and shipping (default: payments URL)"
    )
    parser.add_argument(
        "--upstream-timeout", type=float, default=defaults.timeout_s, help="seconds per call"
    )
    parser.add_argument("--server-name", help="value of the 'server' field (default: host:pid)")
    parser.add_argument("--fault-seed", type=int, help="seed for injected error sampling")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    upstreams = Upstreams(
        inventory_url=args.inventory_url,
        payments_url=args.payments_url,
        monolith_url=args.monolith_url,
        timeout_s=args.upstream_timeout,
    )
    app = create_app(
        args.db, upstreams=upstreams, server_name=args.server_name, fault_seed=args.fault_seed
    )
    web.run_app(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
