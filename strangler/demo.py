"""`strangler demo`: a whole strangler-fig migration on loopback, in one command.

Starts the sample monolith, the inventory and orders services and the proxy (all in this process,
each app on its own loopback port and SQLite file), drives shop-like traffic through the proxy and,
stage by stage, edits a copy of `config/demo.yaml` so the running proxy hot-reloads it:

    legacy -> shadow (compared) -> canary 25% -> canary 75% -> migrated (monolith as fallback)
    -> fault injected into the inventory service (breaker opens, the monolith serves)
    -> fault cleared (half-open probe, breaker closes)

Each second a progress line shows the traffic the proxy sent to each side, fallbacks and shadow
comparisons, read from the proxy's own metrics. `--no-traffic` only starts the stack. Ctrl-C stops
everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientSession, ClientTimeout, web

__all__ = ["STAGES", "run_demo"]


@dataclass(frozen=True)
class DemoStage:
    title: str
    route: dict[str, Any] | None  # the inventory route, or None to keep the previous one
    fault: dict[str, Any] | None = None  # PUT to the inventory service's /_faults


_INVENTORY_MATCH = {"path_prefix": "/api/inventory"}
_COMPARE = {"ignore_paths": ["$.generated_at", "$.server", "$.request_id"]}
_SPLIT_STICKY = {"header": "X-Customer-Id", "set_cookie": "strangler_bucket"}
_BREAKER = {"consecutive_failures": 3, "open_duration": "3s", "half_open_probes": 1}

STAGES: tuple[DemoStage, ...] = (
    DemoStage(
        "1/7 legacy: the monolith serves /api/inventory",
        {"name": "inventory", "stage": "legacy", "match": _INVENTORY_MATCH, "upstream": "legacy"},
    ),
    DemoStage(
        "2/7 shadow: the monolith serves, the inventory service gets a copy, answers compared",
        {
            "name": "inventory",
            "stage": "shadow",
            "match": _INVENTORY_MATCH,
            "upstream": "legacy",
            "shadow": {"upstream": "inventory", "percent": 100, "compare": _COMPARE},
        },
    ),
    DemoStage(
        "3/7 canary: 25% of customers (sticky on X-Customer-Id) go to the inventory service",
        {
            "name": "inventory",
            "stage": "canary",
            "match": _INVENTORY_MATCH,
            "upstream": "legacy",
            "split": {
                "targets": [
                    {"upstream": "inventory", "weight": 25},
                    {"upstream": "legacy", "weight": 75},
                ],
                "sticky": _SPLIT_STICKY,
            },
        },
    ),
    DemoStage(
        "4/7 canary: 75% (customers only move forward, never back)",
        {
            "name": "inventory",
            "stage": "canary",
            "match": _INVENTORY_MATCH,
            "upstream": "legacy",
            "split": {
                "targets": [
                    {"upstream": "inventory", "weight": 75},
                    {"upstream": "legacy", "weight": 25},
                ],
                "sticky": _SPLIT_STICKY,
            },
        },
    ),
    DemoStage(
        "5/7 migrated: the inventory service serves, the monolith is the fallback",
        {
            "name": "inventory",
            "stage": "migrated",
            "match": _INVENTORY_MATCH,
            "upstream": "inventory",
            "fallback": {"upstream": "legacy"},
            "breaker": _BREAKER,
        },
    ),
    DemoStage(
        "6/7 fault: the inventory service goes down; the breaker opens, the monolith serves",
        None,
        fault={"down": True, "reset": True},
    ),
    DemoStage(
        "7/7 recovered: the fault is cleared; a half-open probe closes the breaker", None, fault={}
    ),
)


@dataclass
class Ports:
    proxy: int
    admin: int
    monolith: int
    inventory: int
    orders: int


def _ports(offset: int) -> Ports:
    return Ports(8080 + offset, 9901 + offset, 8001 + offset, 8002 + offset, 8003 + offset)


def _base_config(ports: Ports, host: str) -> dict[str, Any]:
    text = resources.files("strangler").joinpath("data/demo.yaml").read_text(encoding="utf-8")
    config: dict[str, Any] = yaml.safe_load(text)
    config["listen"] = {"host": host, "port": ports.proxy}
    config["admin"] = {"host": "127.0.0.1", "port": ports.admin}
    ups = config["upstreams"]
    ups["legacy"]["url"] = f"http://127.0.0.1:{ports.monolith}"
    ups["inventory"]["url"] = f"http://127.0.0.1:{ports.inventory}"
    ups["orders"]["url"] = f"http://127.0.0.1:{ports.orders}"
    return config


def _write_config(path: Path, config: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    tmp.replace(path)


class Stack:
    """The three sample apps and the proxy, in this process."""

    def __init__(self, ports: Ports, data_dir: Path, host: str) -> None:
        self.ports = ports
        self.data_dir = data_dir
        self.host = host
        self.runners: list[web.AppRunner] = []
        self.config_path = data_dir / "strangler-demo.yaml"
        self.config = _base_config(ports, host)
        self.proxy: Any = None

    async def start(self) -> None:
        from extracted_services.inventory.app import create_app as inventory_app
        from extracted_services.orders.app import Upstreams
        from extracted_services.orders.app import create_app as orders_app
        from legacy_monolith.app import create_app as monolith_app
        from strangler.app import Proxy

        p = self.ports
        monolith_url = f"http://127.0.0.1:{p.monolith}"
        apps = [
            (monolith_app(str(self.data_dir / "monolith.sqlite3")), p.monolith),
            (inventory_app(str(self.data_dir / "inventory.sqlite3")), p.inventory),
            (
                orders_app(
                    str(self.data_dir / "orders.sqlite3"),
                    upstreams=Upstreams(
                        inventory_url=f"http://127.0.0.1:{p.inventory}", payments_url=monolith_url
                    ),
                ),
                p.orders,
            ),
        ]
        for app, port in apps:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)
        _write_config(self.config_path, self.config)
        self.proxy = Proxy(self.config_path, watch_interval=0.25)
        await self.proxy.start()

    async def apply(self, stage: DemoStage) -> None:
        if stage.route is not None:
            config = copy.deepcopy(self.config)
            config["routes"][0] = copy.deepcopy(stage.route)
            self.config = config
            _write_config(self.config_path, config)
            await self.proxy.reload("demo")
        if stage.fault is not None:
            async with ClientSession() as session:
                url = f"http://127.0.0.1:{self.ports.inventory}/_faults"
                async with session.put(url, json=stage.fault) as resp:
                    resp.raise_for_status()

    async def stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        for runner in reversed(self.runners):
            await runner.cleanup()


class Traffic:
    """Shop-like clients: stock checks by many customers, order lookups, a few orders placed."""

    def __init__(self, base: str, clients: int = 4) -> None:
        self.base = base
        self.clients = clients
        self.sent = 0
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.orders: list[tuple[str, str]] = []  # (customer, order id)
        self._stop = asyncio.Event()

    async def run(self) -> None:
        timeout = ClientTimeout(total=5)
        async with ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._client(session, i) for i in range(self.clients)))

    def stop(self) -> None:
        self._stop.set()

    async def _client(self, session: ClientSession, index: int) -> None:
        rng = random.Random(index)
        while not self._stop.is_set():
            customer = f"CUST-{rng.randrange(1, 200):04d}"
            roll = rng.random()
            if roll < 0.7:
                sku = f"SKU-{1001 + rng.randrange(12)}"
                await self._get(session, f"/api/inventory/{sku}", customer)
            elif roll < 0.85:
                await self._get(session, "/api/products", customer)
            elif roll < 0.95 and self.orders:
                owner, order_id = rng.choice(self.orders)
                await self._get(session, f"/api/orders/{order_id}", owner)
            else:
                await self._place_order(session, rng)
            await asyncio.sleep(0.02)

    async def _get(self, session: ClientSession, path: str, customer: str) -> None:
        try:
            async with session.get(self.base + path, headers={"X-Customer-Id": customer}) as resp:
                await resp.read()
                self._count(resp.status)
        except (TimeoutError, OSError):
            self.errors += 1

    async def _place_order(self, session: ClientSession, rng: random.Random) -> None:
        customer = f"CUST-000{rng.randrange(1, 5)}"
        body = {
            "customer_id": customer,
            "items": [{"sku": f"SKU-{1001 + rng.randrange(11)}", "qty": 1}],
            "card_number": "4111111111111111",
        }
        try:
            async with session.post(
                self.base + "/api/orders", json=body, headers={"X-Customer-Id": customer}
            ) as resp:
                data = await resp.json(content_type=None)
                self._count(resp.status)
                order = data.get("order") if isinstance(data, dict) else None
                if isinstance(order, dict) and "id" in order:
                    self.orders.append((customer, str(order["id"])))
                    del self.orders[:-50]
        except (TimeoutError, OSError, ValueError):
            self.errors += 1

    def _count(self, status: int) -> None:
        self.sent += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _progress_line(proxy: Any, traffic: Traffic, last: dict[str, float]) -> str:
    registry = proxy.metrics.registry
    by_role = {"legacy": 0.0, "extracted": 0.0}
    fallbacks = mismatches = matches = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "strangler_requests_total" and labels.get("route") == "inventory":
                by_role[labels["role"]] = by_role.get(labels["role"], 0.0) + sample.value
            elif sample.name == "strangler_fallbacks_total":
                fallbacks += sample.value
            elif sample.name == "strangler_shadow_comparisons_total":
                if labels.get("result") == "match":
                    matches += sample.value
                else:
                    mismatches += sample.value
    # The share over the last interval, so a stage change shows at once.
    legacy = by_role["legacy"] - last.get("legacy", 0.0)
    extracted = by_role["extracted"] - last.get("extracted", 0.0)
    last.update(by_role)
    share = 100.0 * extracted / (legacy + extracted) if legacy + extracted else 0.0
    breakers = []
    snapshot = proxy.snapshot
    if snapshot is not None and "inventory" in snapshot.routes:
        for name, breaker in snapshot.routes["inventory"].breakers.items():
            breakers.append(f"{name}:{breaker.state.value}")
    ok = sum(n for s, n in traffic.statuses.items() if s < 500)
    return (
        f"  requests {traffic.sent:6d} (ok {ok}, 5xx {traffic.sent - ok}, errors "
        f"{traffic.errors}) | /api/inventory extracted {share:5.1f}% | fallbacks "
        f"{int(fallbacks)} | shadow match {int(matches)} mismatch {int(mismatches)}"
        + (f" | breaker {' '.join(breakers)}" if breakers else "")
    )


async def _run(args: argparse.Namespace) -> int:
    ports = _ports(args.port_offset)
    with contextlib.ExitStack() as stack:
        if args.data_dir:
            data_dir = Path(args.data_dir)
            data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  (once, at start)
        else:
            data_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="strangler-demo-"))
            )
        demo = Stack(ports, data_dir, args.host)
        try:
            await demo.start()
        except OSError as exc:
            await demo.stop()
            print(
                f"strangler demo: cannot start ({exc}); is a port busy? Try --port-offset 100",
                file=sys.stderr,
            )
            return 2
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        p = ports
        print(
            f"""
strangler demo is running (data in {data_dir})
  proxy         http://{args.host}:{p.proxy}/api/inventory/SKU-1001
  status page   http://127.0.0.1:{p.admin}/status
  metrics       http://127.0.0.1:{p.admin}/metrics
  admin API     http://127.0.0.1:{p.admin}/admin/routes
  monolith      http://127.0.0.1:{p.monolith}   inventory http://127.0.0.1:{p.inventory}   orders http://127.0.0.1:{p.orders}
  config        {demo.config_path} (edit it: the proxy reloads it)
Press Ctrl-C to stop.
""",
            flush=True,
        )
        try:
            if args.no_traffic:
                await stop.wait()
                return 0
            traffic = Traffic(f"http://127.0.0.1:{p.proxy}")
            runner = asyncio.create_task(traffic.run())
            last: dict[str, float] = {}
            for stage in STAGES:
                print(f"\n== {stage.title}", flush=True)
                await demo.apply(stage)
                # The last stage waits out the breaker's open period so the probe can close it.
                seconds = (
                    args.stage_seconds if stage is not STAGES[-1] else max(args.stage_seconds, 5.0)
                )
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline and not stop.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
                    print(_progress_line(demo.proxy, traffic, last), flush=True)
                if stop.is_set():
                    break
            traffic.stop()
            await runner
            print(
                "\nMigration walked through every stage. The stack keeps running: try "
                f"`strangler progress --admin http://127.0.0.1:{p.admin}`; Ctrl-C to stop."
                if not args.exit_when_done
                else "\nDone.",
                flush=True,
            )
            if not args.exit_when_done:
                await stop.wait()
            return 0
        finally:
            await demo.stop()


def run_demo(args: argparse.Namespace) -> int:
    from strangler.logs import configure_logging

    # The proxy's own events (reload audit entries, breaker transitions) show each stage; the
    # access log is off in config/demo.yaml, the progress line stands for it.
    configure_logging("warning" if args.quiet else "info", "console")
    return asyncio.run(_run(args))
