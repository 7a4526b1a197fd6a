"""The `strangler` command line: serve, validate, routes, explain, progress, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from strangler import __version__, build
from strangler.loader import ConfigError, load_config

__all__ = ["main"]


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# ---- serve --------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from strangler.app import StartupError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    from strangler.logs import configure_logging

    configure_logging(
        args.log_level or config.logging.level, args.log_format or config.logging.format
    )
    if args.workers > 1:
        from strangler.workers import run_workers

        return run_workers(args)
    from strangler.allocator import tune_allocator

    tune_allocator()  # large bodies reuse heap memory instead of fresh mmaps (see the module)
    _use_uvloop()
    try:
        return asyncio.run(_serve(args, reuse_port=args.reuse_port))
    except StartupError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return 2


async def _serve(args: argparse.Namespace, reuse_port: bool = False) -> int:
    from strangler.app import Proxy

    proxy = Proxy(
        args.config, allow_pure_python_parser=args.allow_pure_python_parser, reuse_port=reuse_port
    )
    await proxy.start()
    proxy.install_signal_handlers()
    await proxy.wait_stopped()
    return 0


# ---- validate / routes / explain ----------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            for issue in exc.errors:
                print(issue)
            status = 1
            continue
        print(f"{path}: ok ({len(config.routes)} routes, version {config.version})")
    return status


def _route_rows(config: Any) -> list[dict[str, Any]]:
    rows = []
    routes = list(config.routes) + ([config.default_route] if config.default_route else [])
    for route in routes:
        m = route.matcher
        if m.path_prefix is not None:
            match = f"prefix {m.path_prefix}"
        elif m.path is not None:
            match = f"path {m.path}"
        elif m.path_regex is not None:
            match = f"regex {m.path_regex.pattern}"
        else:
            match = "any path"
        if m.methods:
            match += " [" + ",".join(sorted(m.methods)) + "]"
        if m.hosts:
            match += " host=" + ",".join(m.hosts)
        if route.split is not None:
            share = route.split.extracted_weight
            target = " / ".join(f"{n} {w:g}%" for n, w in route.split.targets)
        else:
            share = 100.0 if config.upstreams[route.upstream].role.value == "extracted" else 0.0
            target = route.upstream
        rows.append(
            {
                "name": route.name,
                "stage": route.stage.value,
                "match": match,
                "upstream": target,
                "extracted_share": share,
                "fallback": route.fallback.upstream if route.fallback else "-",
                "shadow": (
                    f"{route.shadow.upstream} {route.shadow.percent:g}%" if route.shadow else "-"
                ),
            }
        )
    return rows


def cmd_routes(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    rows = _route_rows(config)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ["name", "stage", "match", "upstream", "extracted_share", "fallback", "shadow"]
    table = [[str(r[c]) if c != "extracted_share" else f"{r[c]:g}%" for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return 0


class _ExplainFacts:
    def __init__(
        self,
        method: str,
        path: str,
        host: str | None,
        headers: dict[str, str],
        cookies: dict[str, str],
    ) -> None:
        self.method = method
        self.path = path
        self.host = host
        self._headers = headers
        self._cookies = cookies

    def header(self, name: str) -> str | None:
        return self._headers.get(name.lower())

    def cookie(self, name: str) -> str | None:
        return self._cookies.get(name)


def cmd_explain(args: argparse.Namespace) -> int:
    from strangler.pathnorm import UnsafeTarget, normalize_target
    from strangler.routing import RouteEntry, RouteTable

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        target = normalize_target(args.target.encode("utf-8"))
    except UnsafeTarget as exc:
        print(f"{args.method} {args.target}: rejected with 400 ({exc.reason}): {exc}")
        return 0
    headers = {}
    for item in args.header or []:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    cookies = {}
    for item in args.cookie or []:
        name, _, value = item.partition("=")
        cookies[name.strip()] = value.strip()
    facts = _ExplainFacts(args.method.upper(), target.path, args.host, headers, cookies)
    entries = [RouteEntry(r.name, r.matcher, r) for r in config.routes]
    default = config.default_route
    table = RouteTable.build(
        entries, RouteEntry(default.name, default.matcher, default) if default else None
    )
    if target.path != args.target.split("?")[0]:
        print(f"normalised path: {target.path}")
    for name, matched, reason in table.explain(facts):
        print(f"  {'->' if matched else '  '} {name}: {reason}")
    match = table.match(facts)
    if match.entry is None:
        print(
            f"{args.method.upper()} {target.path}: no route matches "
            f"({'405' if match.method_mismatch else '404'})"
        )
        return 0
    route = match.entry.payload
    line = f"{args.method.upper()} {target.path} -> route {route.name} (stage {route.stage.value})"
    if route.split is not None:
        line += ": split " + ", ".join(f"{n} {w:g}%" for n, w in route.split.targets)
    else:
        up = config.upstreams[route.upstream]
        line += f" -> upstream {up.name} ({up.role.value}, {up.url})"
    if route.fallback:
        line += f", fallback {route.fallback.upstream}"
    if route.shadow:
        line += f", shadowed to {route.shadow.upstream} at {route.shadow.percent:g}%"
    print(line)
    return 0


# ---- progress -----------------------------------------------------------------------------
def cmd_progress(args: argparse.Namespace) -> int:
    base = args.admin.rstrip("/")
    try:
        with urllib.request.urlopen(base + "/admin/routes", timeout=5) as resp:
            routes = json.load(resp)
        with urllib.request.urlopen(base + "/admin/progress", timeout=5) as resp:
            progress = json.load(resp)
    except (urllib.error.URLError, OSError) as exc:
        print(f"strangler progress: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"routes": routes, "progress": progress}, indent=2))
        return 0
    overall = routes["overall"]
    share = overall["observed_extracted_share"]
    print(f"Migration progress (config {routes['version']})")
    print(
        f"  traffic served by extracted services (last 5 min): "
        f"{'no traffic' if share is None else f'{share:.1f}%'}"
    )
    print(
        "  routes by stage: " + ", ".join(f"{k} {v:g}%" for k, v in overall["stage_share"].items())
    )
    print()
    print(f"  {'ROUTE':20} {'STAGE':9} {'CONFIGURED':>10} {'OBSERVED':>9}")
    for r in routes["routes"]:
        obs = r["observed_extracted_share"]
        print(
            f"  {r['name']:20} {r['stage']:9} {r['configured_extracted_weight']:>9g}% "
            f"{'-' if obs is None else f'{obs:.1f}%':>9}"
        )
    print()
    print("Still served by the monolith (top path templates):")
    rows = [
        (p["template"], p["requests"], r["route"])
        for r in progress["routes"]
        for p in r["legacy_paths"]
    ]
    rows.sort(key=lambda x: -x[1])
    for template, count, route in rows[: args.top]:
        print(f"  {count:8d}  {template}  ({route})")
    if not rows:
        print("  (nothing recorded yet)")
    return 0


# ---- main ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strangler", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"strangler {__version__} ({build()} data plane)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the proxy")
    p.add_argument(
        "--config", "-c", default=os.environ.get("STRANGLER_CONFIG", "config/routes.yaml")
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)"
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "console"])
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--allow-pure-python-parser",
        action="store_true",
        help="run even when aiohttp's C parser is unavailable (not recommended)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("validate", help="check config files; print every error and exit 1")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("routes", help="print the route table")
    p.add_argument("--config", "-c", default="config/routes.yaml")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_routes)

    p = sub.add_parser("explain", help="which route and upstream a request would take, and why")
    p.add_argument("--config", "-c", default="config/routes.yaml")
    p.add_argument("--host")
    p.add_argument("--header", "-H", action="append", help="'Name: value'")
    p.add_argument("--cookie", action="append", help="'name=value'")
    p.add_argument("method")
    p.add_argument("target")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("progress", help="migration progress report from a running proxy")
    p.add_argument("--admin", default="http://127.0.0.1:9901")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_progress)

    p = sub.add_parser("demo", help="run the monolith, extracted services and proxy, and migrate")
    p.add_argument("--no-traffic", action="store_true", help="just start the stack")
    p.add_argument("--host", default="127.0.0.1", help="proxy listen address (default loopback)")
    p.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="shift every port (proxy 8080, admin 9901, apps 8001-8003) by N",
    )
    p.add_argument("--stage-seconds", type=float, default=8.0, help="time spent in each stage")
    p.add_argument("--data-dir", help="keep the SQLite files here (default: a temp dir)")
    p.add_argument("--exit-when-done", action="store_true", help="stop after the last stage")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="hide the proxy's own log events (reloads, breaker transitions)",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from strangler.demo import run_demo

    return run_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
