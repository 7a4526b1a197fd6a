"""``python -m legacy_monolith --host 127.0.0.1 --port 8001 --db PATH``."""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from legacy_monolith.app import create_app

DEFAULT_PORT = 8001
DEFAULT_DB = str(Path(tempfile.gettempdir()) / "strangler-samples" / "legacy-monolith.sqlite3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m legacy_monolith", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument("--db", default=DEFAULT_DB, help="SQLite file (default: %(default)s)")
    parser.add_argument("--server-name", help="value of the 'server' field (default: host:pid)")
    parser.add_argument("--fault-seed", type=int, help="seed for injected error sampling")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = create_app(args.db, server_name=args.server_name, fault_seed=args.fault_seed)
    web.run_app(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
