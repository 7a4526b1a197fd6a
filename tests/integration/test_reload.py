"""Hot reload (issue 8): file watch, SIGHUP, POST /admin/reload; all-or-nothing swaps under traffic.

Real loopback servers only: two echo upstreams (`legacy`, `orders`) that answer with their name, the
proxy started in the test's loop (or as a `strangler serve` subprocess for SIGHUP). Config files are
rewritten atomically (temp file + os.replace), as an operator's tooling or a ConfigMap swap would.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from strangler.split import WeightedSplit, bucket_of
from tests.harness import ProxyHandle, echo_app, free_port, start_app

Factory = Callable[..., Awaitable[ProxyHandle]]

EFFECT_WITHIN = 1.0  # seconds: a good edit must be serving by then (watch interval 0.5 s)
ROUTE_PATH = "/api/orders/7"


@dataclass(frozen=True, slots=True)
class Upstreams:
    legacy: int
    orders: int


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    legacy_runner, legacy_port = await start_app(echo_app("legacy"))
    orders_runner, orders_port = await start_app(echo_app("orders"))
    yield Upstreams(legacy_port, orders_port)
    await legacy_runner.cleanup()
    await orders_runner.cleanup()


def config_yaml(
    ports: Upstreams,
    *,
    target: str = "legacy",
    extracted_weight: float | None = None,
    extra_route: bool = False,
    breaker_failures: int | None = None,
    header: str = "",
) -> str:
    """A small valid config: route `orders` on /api/orders goes to `target` or a sticky split."""
    lines = [
        header.rstrip("\n"),
        "upstreams:",
        "  legacy:",
        f"    url: http://127.0.0.1:{ports.legacy}",
        "    role: legacy",
        "  orders:",
        f"    url: http://127.0.0.1:{ports.orders}",
        "    role: extracted",
        "routes:",
        "  - name: orders",
        "    match: {path_prefix: /api/orders}",
    ]
    if extracted_weight is not None:
        lines += [
            "    upstream: legacy",
            "    split:",
            "      targets:",
            f"        - {{upstream: orders, weight: {extracted_weight:g}}}",
            f"        - {{upstream: legacy, weight: {100 - extracted_weight:g}}}",
            "      sticky: {header: X-User}",
        ]
    else:
        lines.append(f"    upstream: {target}")
    if breaker_failures is not None:
        lines += [
            "    breaker:",
            f"      consecutive_failures: {breaker_failures}",
            "      open_duration: 30s",
        ]
    if extra_route:
        lines += [
            "  - name: reports",
            "    match: {path_prefix: /api/reports}",
            "    upstream: legacy",
        ]
    lines += ["default:", "  upstream: legacy", ""]
    return "\n".join(line for line in lines if line or line == "")


def write_atomic(path: Path, text: str) -> None:
    """Replace the file in one step; a new inode makes every rewrite visible to the watcher."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


async def upstream_of(session: aiohttp.ClientSession, url: str, user: str = "u") -> str:
    async with session.get(url, headers={"X-User": user}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return str(body["upstream"])


async def wait_for_upstream(
    session: aiohttp.ClientSession,
    url: str,
    expected: str,
    *,
    user: str = "u",
    within: float = EFFECT_WITHIN,
) -> float:
    """Poll until requests reach `expected`; return how long it took (fail after `within`)."""
    started = time.monotonic()
    while True:
        if await upstream_of(session, url, user) == expected:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"{url} still not served by {expected} after {within}s")
        await asyncio.sleep(0.02)


# ---- the three triggers ---------------------------------------------------------------------
async def test_file_edit_takes_effect_within_a_second(
    proxy_factory: Factory, upstreams: Upstreams
) -> None:
    handle = await proxy_factory(config_yaml(upstreams, target="legacy"))
    assert handle.proxy.watch_interval == 0.5
    async with aiohttp.ClientSession() as session:
        assert await upstream_of(session, handle.url(ROUTE_PATH)) == "legacy"
        header = handle.config_path.read_text().split("upstreams:")[0]
        write_atomic(handle.config_path, config_yaml(upstreams, target="orders", header=header))
        await wait_for_upstream(session, handle.url(ROUTE_PATH), "orders")
    assert handle.proxy.reload_history[-1]["trigger"] == "watch"


async def test_admin_reload_applies_then_reports_unchanged(
    proxy_factory: Factory, upstreams: Upstreams
) -> None:
    handle = await proxy_factory(config_yaml(upstreams, target="legacy"), watch_interval=60)
    header = handle.config_path.read_text().split("upstreams:")[0]
    write_atomic(handle.config_path, config_yaml(upstreams, target="orders", header=header))
    async with aiohttp.ClientSession() as session:
        async with session.post(handle.admin_url("/admin/reload")) as resp:
            assert resp.status == 200
            first = await resp.json()
        assert first["ok"] is True and first["changed"] is True
        assert await upstream_of(session, handle.url(ROUTE_PATH)) == "orders"
        snapshot = handle.proxy.snapshot
        async with session.post(handle.admin_url("/admin/reload")) as resp:
            assert resp.status == 200
            second = await resp.json()
        assert second == {**second, "ok": True, "changed": False, "version": first["version"]}
        assert handle.proxy.snapshot is snapshot


async def test_unchanged_file_rebuilds_nothing(
    proxy_factory: Factory, upstreams: Upstreams
) -> None:
    handle = await proxy_factory(config_yaml(upstreams), watch_interval=0.05)
    snapshot = handle.proxy.snapshot
    reloads = handle.metric("strangler_config_reloads_total", result="success")
    # Same bytes, new inode and mtime: the watcher looks, finds the digest unchanged, keeps all.
    write_atomic(handle.config_path, handle.config_path.read_text())
    await asyncio.sleep(0.3)
    result = await handle.proxy.reload()
    assert (result.ok, result.changed) == (True, False)
    assert handle.proxy.snapshot is snapshot
    assert handle.metric("strangler_config_reloads_total", result="success") == reloads
    assert handle.proxy.reload_history == []


async def test_sighup_reloads_a_serving_process(tmp_path: Path, upstreams: Upstreams) -> None:
    port, admin_port = free_port(), free_port()
    header = (
        f"version: 1\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
        f"admin: {{host: 127.0.0.1, port: {admin_port}}}\n"
    )
    path = tmp_path / "serve.yaml"
    path.write_text(config_yaml(upstreams, target="legacy", header=header))
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "strangler.cli",
            "serve",
            "--config",
            str(path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, f"http://127.0.0.1:{admin_port}/health/ready", proc)
            url = f"http://127.0.0.1:{port}{ROUTE_PATH}"
            assert await upstream_of(session, url) == "legacy"
            # Rewrite in place with the same size and the old mtime: the file watcher sees no
            # change, so only the signal can make the process read the new text.
            before = path.stat()
            new_text = config_yaml(upstreams, target="orders", header=header)
            assert len(new_text) == before.st_size
            with path.open("r+", encoding="utf-8") as file:
                file.write(new_text)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            await asyncio.sleep(0.7)  # longer than the watch interval: the watcher did not fire
            assert await upstream_of(session, url) == "legacy"
            proc.send_signal(signal.SIGHUP)
            await wait_for_upstream(session, url, "orders")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
    events = _json_lines(stderr_path)
    reloaded = [e for e in events if e.get("event") == "strangler.config.reloaded"]
    assert [e["trigger"] for e in reloaded] == ["sighup"]
    assert proc.returncode == 0


async def _wait_ready(
    session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process
) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.returncode is None, "strangler serve exited during startup"
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    pytest.fail("strangler serve did not become ready within 10 s")


def _json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


# ---- swaps and in-flight requests ------------------------------------------------------------
@pytest.fixture
async def slow_legacy() -> AsyncIterator[int]:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        return web.json_response({"upstream": "legacy"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner, port = await start_app(app)
    yield port
    await runner.cleanup()


MOVES = {
    # what the reload does while the slow request is in flight
    "route moved to another upstream": lambda slow, other: Upstreams(slow, other),
    "upstream url changed": lambda slow, other: Upstreams(other, other),
}


@pytest.mark.parametrize("move", list(MOVES), ids=list(MOVES))
async def test_in_flight_request_finishes_on_its_snapshot(
    proxy_factory: Factory, upstreams: Upstreams, slow_legacy: int, move: str
) -> None:
    start = Upstreams(slow_legacy, upstreams.orders)
    handle = await proxy_factory(config_yaml(start, target="legacy"), watch_interval=60)
    header = handle.config_path.read_text().split("upstreams:")[0]
    after = MOVES[move](slow_legacy, upstreams.orders)
    target = "orders" if move.startswith("route") else "legacy"
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(upstream_of(session, handle.url(ROUTE_PATH + "?sleep=1")))
        await asyncio.sleep(0.3)
        assert handle.proxy.in_flight() == 1
        write_atomic(handle.config_path, config_yaml(after, target=target, header=header))
        result = await handle.proxy.reload()
        assert result.ok and result.changed
        # New requests use the new snapshot (the "orders" echo answers either way)...
        assert await upstream_of(session, handle.url(ROUTE_PATH)) == "orders"
        # ...and the one in flight completes from the upstream it started on.
        assert await asyncio.wait_for(slow, 5) == "legacy"


# ---- breaker carry-over ---------------------------------------------------------------------
@pytest.fixture
async def failing_orders() -> AsyncIterator[int]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"upstream": "orders"}, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner, port = await start_app(app)
    yield port
    await runner.cleanup()


def _orders_breaker(handle: ProxyHandle) -> object:
    snapshot = handle.proxy.snapshot
    assert snapshot is not None
    return snapshot.routes["orders"].breakers["orders"]


async def _breaker_state(session: aiohttp.ClientSession, handle: ProxyHandle) -> str:
    async with session.get(handle.admin_url("/admin/breakers")) as resp:
        body = await resp.json()
    states = {(b["route"], b["upstream"]): b["state"] for b in body["breakers"]}
    return str(states[("orders", "orders")])


async def test_open_breaker_survives_reload_unless_its_settings_change(
    proxy_factory: Factory, upstreams: Upstreams, failing_orders: int
) -> None:
    ports = Upstreams(upstreams.legacy, failing_orders)
    handle = await proxy_factory(
        config_yaml(ports, target="orders", breaker_failures=2), watch_interval=60
    )
    header = handle.config_path.read_text().split("upstreams:")[0]
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(handle.url(ROUTE_PATH)) as resp:
                assert resp.status == 500
        assert await _breaker_state(session, handle) == "open"
        breaker = _orders_breaker(handle)

        write_atomic(
            handle.config_path,
            config_yaml(
                ports, target="orders", breaker_failures=2, extra_route=True, header=header
            ),
        )
        assert (await handle.proxy.reload()).changed
        assert _orders_breaker(handle) is breaker
        assert await _breaker_state(session, handle) == "open"
        async with session.get(handle.url(ROUTE_PATH)) as resp:
            assert resp.status == 503  # still short-circuited: the state carried over

        write_atomic(
            handle.config_path,
            config_yaml(
                ports, target="orders", breaker_failures=3, extra_route=True, header=header
            ),
        )
        assert (await handle.proxy.reload()).changed
        assert _orders_breaker(handle) is not breaker
        assert await _breaker_state(session, handle) == "closed"


# ---- invalid files --------------------------------------------------------------------------
BAD_EDITS: dict[str, tuple[Callable[[str], str], str, str]] = {
    # name: (transform of the good text, text on the broken line, key path in the error)
    "yaml syntax error": (
        lambda t: t.replace("{path_prefix: /api/orders}", "{path_prefix: /api/orders"),
        "path_prefix",
        "",
    ),
    "failed validation": (
        lambda t: t.replace("role: extracted", "role: extractd"),
        "extractd",
        "upstreams.orders.role",
    ),
    "unknown upstream": (
        lambda t: t.replace("    upstream: orders", "    upstream: ordrs"),
        "ordrs",
        "routes[0].upstream",
    ),
}


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("edit", list(BAD_EDITS), ids=list(BAD_EDITS))
async def test_invalid_file_changes_nothing_and_is_reported_until_fixed(
    proxy_factory: Factory, upstreams: Upstreams, edit: str
) -> None:
    handle = await proxy_factory(config_yaml(upstreams, target="orders"), watch_interval=60)
    proxy = handle.proxy
    good_text = handle.config_path.read_text()
    header = good_text.split("upstreams:")[0]
    snapshot, version = proxy.snapshot, proxy.config.version
    transform, marker, key = BAD_EDITS[edit]
    bad_text = transform(good_text)
    assert bad_text != good_text
    bad_line = _line_of(bad_text, marker)
    write_atomic(handle.config_path, bad_text)

    with structlog.testing.capture_logs() as logs:
        result = await proxy.reload()
    assert not result.ok and not result.changed
    assert proxy.snapshot is snapshot and proxy.config.version == version
    location = f"{handle.config_path}:"
    assert any(e.startswith(location) and key in e for e in result.errors), result.errors
    if edit != "yaml syntax error":
        assert any(e.startswith(f"{location}{bad_line} ") for e in result.errors), result.errors
    else:  # the parser reports where it noticed the problem, at or after the broken line
        assert all(
            int(e[len(location) :].split(" ")[0].rstrip(":")) >= bad_line for e in result.errors
        ), result.errors
    failed = [e for e in logs if e["event"] == "strangler.config.reload_failed"]
    assert len(failed) == 1 and failed[0]["errors"] == result.errors
    assert failed[0]["log_level"] == "error"
    assert handle.metric("strangler_config_reloads_total", result="failure") == 1
    assert proxy.last_error is not None and proxy.last_error["errors"] == result.errors

    async with aiohttp.ClientSession() as session:
        assert await upstream_of(session, handle.url(ROUTE_PATH)) == "orders"  # last good config
        async with session.get(handle.admin_url("/admin/config")) as resp:
            body = await resp.json()
        assert body["version"] == version and body["last_error"]["errors"] == result.errors
        async with session.get(handle.admin_url("/admin/routes")) as resp:
            body = await resp.json()
        assert body["overall"]["last_error"]["errors"] == result.errors
        # Asking again while the file is still broken still says so (422), counted once.
        async with session.post(handle.admin_url("/admin/reload")) as resp:
            assert resp.status == 422
            again = await resp.json()
        assert again["ok"] is False and again["errors"] == result.errors
        assert proxy.snapshot is snapshot

        write_atomic(handle.config_path, config_yaml(upstreams, target="legacy", header=header))
        assert (await proxy.reload()).changed
        assert await upstream_of(session, handle.url(ROUTE_PATH)) == "legacy"
        async with session.get(handle.admin_url("/admin/config")) as resp:
            assert (await resp.json())["last_error"] is None
        async with session.get(handle.admin_url("/admin/routes")) as resp:
            assert (await resp.json())["overall"]["last_error"] is None


async def test_restoring_the_serving_file_after_a_bad_edit_clears_the_error(
    proxy_factory: Factory, upstreams: Upstreams
) -> None:
    handle = await proxy_factory(config_yaml(upstreams), watch_interval=60)
    proxy = handle.proxy
    good_text = handle.config_path.read_text()
    snapshot = proxy.snapshot
    write_atomic(handle.config_path, good_text.replace("role: legacy", "role: legac"))
    assert not (await proxy.reload()).ok
    write_atomic(handle.config_path, good_text)
    result = await proxy.reload()
    assert (result.ok, result.changed) == (True, False) and proxy.last_error is None
    assert proxy.snapshot is snapshot  # the serving text is back: nothing rebuilt


# ---- audit log ------------------------------------------------------------------------------
async def test_successful_reload_logs_an_audit_entry(
    proxy_factory: Factory, upstreams: Upstreams
) -> None:
    handle = await proxy_factory(config_yaml(upstreams, extracted_weight=10), watch_interval=60)
    header = handle.config_path.read_text().split("upstreams:")[0]
    write_atomic(
        handle.config_path,
        config_yaml(upstreams, extracted_weight=30, extra_route=True, header=header),
    )
    with structlog.testing.capture_logs() as logs:
        await handle.proxy.reload()
    write_atomic(handle.config_path, config_yaml(upstreams, target="orders", header=header))
    with structlog.testing.capture_logs() as logs2:
        await handle.proxy.reload()
    first = [e for e in logs if e["event"] == "strangler.config.reloaded"]
    second = [e for e in logs2 if e["event"] == "strangler.config.reloaded"]
    assert len(first) == 1 and len(second) == 1
    assert first[0]["routes_added"] == ["reports"] and first[0]["routes_removed"] == []
    assert first[0]["weight_changes"] == {"orders": [10.0, 30.0]}
    assert first[0]["stage_changes"] == {}
    assert second[0]["routes_removed"] == ["reports"] and second[0]["routes_added"] == []
    assert second[0]["stage_changes"] == {"orders": ["canary", "retired"]}
    assert second[0]["weight_changes"] == {"orders": [30.0, None]}
    assert second[0]["trigger"] == "api" and second[0]["version"] == handle.proxy.config.version


# ---- the headline: rewrites under continuous traffic -----------------------------------------
def _probe_user() -> str:
    """A sticky key that lands on legacy at 10 % extracted and on orders at 90 %."""
    low = WeightedSplit((("orders", 10.0), ("legacy", 90.0)))
    high = WeightedSplit((("orders", 90.0), ("legacy", 10.0)))
    return next(
        key
        for key in (f"probe-{i}" for i in range(1000))
        if low.choose(bucket_of(key)) == "legacy" and high.choose(bucket_of(key)) == "orders"
    )


def _edits(ports: Upstreams, header: str, count: int) -> Iterator[tuple[str, str, str | None]]:
    """(kind, text, upstream the probe key must reach or None when bad), good and bad by turns."""
    goods = [
        ("moved to orders", config_yaml(ports, target="orders", header=header), "orders"),
        ("canary 10%", config_yaml(ports, extracted_weight=10, header=header), "legacy"),
        ("canary 90%", config_yaml(ports, extracted_weight=90, header=header), "orders"),
        ("moved to legacy", config_yaml(ports, target="legacy", header=header), "legacy"),
    ]
    bads = [
        (
            "syntax error",
            goods[0][1].replace("{path_prefix: /api/orders}", "{path_prefix: /x"),
            None,
        ),
        (
            "unknown upstream",
            goods[0][1].replace("    upstream: orders", "    upstream: ordrs"),
            None,
        ),
    ]
    for i in range(count):
        kind, text, expected = goods[(i // 2) % 4] if i % 2 == 0 else bads[(i // 2) % 2]
        # A counter comment keeps every rewrite distinct in size as well as inode.
        yield kind, text + "#" * (i + 1) + "\n", expected


async def test_rewrites_under_continuous_traffic_never_fail_a_request(
    proxy_factory: Factory, upstreams: Upstreams
) -> None:
    handle = await proxy_factory(config_yaml(upstreams, target="legacy"), watch_interval=0.1)
    proxy = handle.proxy
    header = handle.config_path.read_text().split("upstreams:")[0]
    probe = _probe_user()
    stop = asyncio.Event()
    outcomes: dict[str, int] = {}
    failures: list[str] = []

    async def client(n: int) -> None:
        connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection per client
        async with aiohttp.ClientSession(connector=connector) as session:
            while not stop.is_set():
                try:
                    async with session.get(
                        handle.url(f"{ROUTE_PATH}?c={n}"), headers={"X-User": f"client-{n}"}
                    ) as resp:
                        body = await resp.read()
                        upstream = json.loads(body).get("upstream") if resp.status == 200 else None
                        if upstream not in ("legacy", "orders"):
                            failures.append(f"{resp.status} {body[:200]!r}")
                        else:
                            outcomes[upstream] = outcomes.get(upstream, 0) + 1
                except (aiohttp.ClientError, ValueError) as exc:
                    failures.append(repr(exc))

    clients = [asyncio.ensure_future(client(n)) for n in range(4)]
    failures_seen = 0.0
    delays: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 8
            for kind, text, expected in _edits(upstreams, header, 20):
                assert time.monotonic() < deadline, "edits took too long"
                write_atomic(handle.config_path, text)
                if expected is not None:
                    delays.append(
                        await wait_for_upstream(
                            session, handle.url(ROUTE_PATH), expected, user=probe
                        )
                    )
                    assert proxy.last_error is None
                    continue
                started = time.monotonic()
                while (
                    handle.metric("strangler_config_reloads_total", result="failure")
                    == failures_seen
                ):
                    assert time.monotonic() - started < EFFECT_WITHIN, f"{kind} not rejected"
                    await asyncio.sleep(0.02)
                failures_seen += 1
                assert proxy.last_error is not None
                errors = proxy.last_error["errors"]
                assert errors and all(e.startswith(f"{handle.config_path}:") for e in errors)
                if kind == "unknown upstream":
                    assert any("routes[0].upstream" in e and "ordrs" in e for e in errors), errors
                # the last good config still serves the probe
                assert await upstream_of(session, handle.url(ROUTE_PATH), probe) in (
                    "legacy",
                    "orders",
                )
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert failures == []
    assert sum(outcomes.values()) > 100 and set(outcomes) == {"legacy", "orders"}
    assert len(delays) == 10 and max(delays) < EFFECT_WITHIN
    assert failures_seen == 10
    assert handle.metric("strangler_config_reloads_total", result="success") == 10


async def test_listener_change_applies_the_rest_and_waits_for_a_restart(
    proxy_factory: Factory, upstreams: Upstreams
) -> None:
    handle = await proxy_factory(config_yaml(upstreams, target="legacy"), watch_interval=60)
    header = handle.config_path.read_text().split("upstreams:")[0]
    moved = header.replace(f"port: {handle.port}", f"port: {free_port()}")
    assert moved != header
    write_atomic(handle.config_path, config_yaml(upstreams, target="orders", header=moved))
    result = await handle.proxy.reload()
    assert result.ok and result.changes["restart_required"] == ["listen"]
    async with aiohttp.ClientSession() as session:
        # Routes changed at once, on the listener that is actually bound.
        assert await upstream_of(session, handle.url(ROUTE_PATH)) == "orders"
        async with session.get(handle.admin_url("/admin/config")) as resp:
            effective = await resp.json()
    assert effective["config"]["listen"]["port"] == handle.port


async def test_kubernetes_configmap_style_symlink_swap_is_reloaded(
    tmp_path: Path, upstreams: Upstreams
) -> None:
    """A ConfigMap volume updates by swapping a `..data` symlink to a new timestamped directory;
    the file the proxy reads is a symlink through it. The watcher follows the link (issue 11)."""
    from prometheus_client import CollectorRegistry

    from strangler.app import Proxy

    mount = tmp_path / "mount"
    mount.mkdir()
    header = (
        f"version: 1\nlisten: {{host: 127.0.0.1, port: {free_port()}}}\n"
        f"admin: {{host: 127.0.0.1, port: {free_port()}}}\n"
    )

    def publish(version: str, text: str) -> None:
        data = mount / f"..{version}"
        data.mkdir()
        (data / "routes.yaml").write_text(text)
        link = mount / "..data_tmp"
        link.symlink_to(data.name)
        os.replace(link, mount / "..data")  # the kubelet's atomic swap

    publish("2026_11_27_01", config_yaml(upstreams, target="legacy", header=header))
    (mount / "routes.yaml").symlink_to("..data/routes.yaml")
    proxy = Proxy(
        mount / "routes.yaml",
        registry=CollectorRegistry(),
        access_stream=io.StringIO(),
        watch_interval=0.2,
    )
    await proxy.start()
    try:
        url = f"http://127.0.0.1:{proxy.port}{ROUTE_PATH}"
        async with aiohttp.ClientSession() as session:
            assert await upstream_of(session, url) == "legacy"
            publish("2026_11_27_02", config_yaml(upstreams, target="orders", header=header))
            took = await wait_for_upstream(session, url, "orders")
        assert took < EFFECT_WITHIN
        assert proxy.reload_history[-1]["trigger"] == "watch"
    finally:
        await proxy.stop()
