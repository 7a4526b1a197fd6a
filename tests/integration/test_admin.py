"""The admin listener (issue 8): health, metrics, admin endpoints, bearer token, safe binding.

Real loopback servers: two echo upstreams, the proxy started in the test's loop, and `strangler
serve` subprocesses where the token comes from the environment or startup must be refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

import strangler
from strangler.app import Proxy, StartupError
from tests.harness import ProxyHandle, echo_app, free_port, start_app

Factory = Callable[..., Awaitable[ProxyHandle]]

TOKEN = "s3cret"
TOKEN_ENV = "STRANGLER_TEST_ADMIN_TOKEN_8"


@pytest.fixture
async def ports() -> AsyncIterator[tuple[int, int]]:
    legacy_runner, legacy_port = await start_app(echo_app("legacy"))
    orders_runner, orders_port = await start_app(echo_app("orders"))
    yield legacy_port, orders_port
    await legacy_runner.cleanup()
    await orders_runner.cleanup()


def config_yaml(legacy: int, orders: int, *, admin: str = "", header: str = "") -> str:
    """A shadowed route (the echo bodies differ, so it mismatches) and a migrated one."""
    return f"""{header}{admin}
upstreams:
  legacy:
    url: http://127.0.0.1:{legacy}
    role: legacy
  orders:
    url: http://127.0.0.1:{orders}
    role: extracted
routes:
  - name: reads
    match: {{path_prefix: /api/reads}}
    upstream: legacy
    shadow: {{upstream: orders, percent: 100}}
  - name: orders
    match: {{path_prefix: /api/orders}}
    upstream: orders
    fallback: {{upstream: legacy}}
    breaker: {{consecutive_failures: 5}}
default:
  upstream: legacy
"""


# ---- every endpoint answers sensibly --------------------------------------------------------
def _check_live(body: Any, proxy: Proxy) -> None:
    assert body == {"status": "live"}


def _check_ready(body: Any, proxy: Proxy) -> None:
    assert body == {"status": "ready", "version": proxy.config.version}


def _check_config(body: Any, proxy: Proxy) -> None:
    assert body["version"] == proxy.config.version and body["last_error"] is None
    assert body["path"] == str(proxy.path)
    config = body["config"]
    assert [r["name"] for r in config["routes"]] == ["reads", "orders"]
    assert set(config["upstreams"]) == {"legacy", "orders"}
    assert config["admin"]["token_env"] == "STRANGLER_ADMIN_TOKEN"
    assert "source" not in config


def _check_routes(body: Any, proxy: Proxy) -> None:
    assert body["version"] == proxy.config.version
    by_name = {r["name"]: r for r in body["routes"]}
    assert by_name["reads"]["stage"] == "shadow" and by_name["reads"]["shadow"] == "orders"
    assert by_name["orders"]["stage"] == "migrated"
    assert (by_name["orders"]["upstream"], by_name["orders"]["fallback"]) == ("orders", "legacy")
    assert by_name["orders"]["configured_extracted_weight"] == 100.0
    assert body["overall"]["last_error"] is None
    assert set(body["overall"]["stage_share"]) >= {"shadow", "migrated"}


def _check_breakers(body: Any, proxy: Proxy) -> None:
    states = {(b["route"], b["upstream"]): b["state"] for b in body["breakers"]}
    assert states[("orders", "orders")] == "closed"


def _check_mismatches(body: Any, proxy: Proxy) -> None:
    assert body["mismatches"], body  # the request sent before polling was mirrored and differed
    assert {m["route"] for m in body["mismatches"]} == {"reads"}
    assert "reads" in body["field_counts"]


def _check_progress(body: Any, proxy: Proxy) -> None:
    assert {r["route"] for r in body["routes"]} >= {"reads", "orders"}


def _check_info(body: Any, proxy: Proxy) -> None:
    build = strangler.build()
    assert body == {"name": "strangler", "version": strangler.__version__, "build": build}


JSON_ENDPOINTS: dict[str, Callable[[Any, Proxy], None]] = {
    "/": _check_info,
    "/health/live": _check_live,
    "/health/ready": _check_ready,
    "/admin/config": _check_config,
    "/admin/routes": _check_routes,
    "/admin/breakers": _check_breakers,
    "/admin/shadow/mismatches": _check_mismatches,
    "/admin/progress": _check_progress,
}


@pytest.mark.parametrize("path", list(JSON_ENDPOINTS), ids=list(JSON_ENDPOINTS))
async def test_read_endpoints_answer(
    proxy_factory: Factory, ports: tuple[int, int], path: str
) -> None:
    handle = await proxy_factory(config_yaml(*ports), watch_interval=60)
    async with aiohttp.ClientSession() as session:
        for upstream_path in ("/api/reads/1", "/api/orders/1"):
            async with session.get(handle.url(upstream_path)) as resp:
                assert resp.status == 200
        deadline = time.monotonic() + 3
        while True:
            async with session.get(handle.admin_url(path)) as resp:
                assert resp.status == 200
                assert resp.content_type == "application/json"
                body = await resp.json()
            try:
                JSON_ENDPOINTS[path](body, handle.proxy)
                return
            except AssertionError:
                # the shadow comparison finishes after the primary response: give it a moment
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)


async def test_metrics_endpoint_serves_prometheus_text(
    proxy_factory: Factory, ports: tuple[int, int]
) -> None:
    handle = await proxy_factory(config_yaml(*ports), watch_interval=60)
    async with aiohttp.ClientSession() as session:
        async with session.get(handle.url("/api/orders/1")) as resp:
            assert resp.status == 200
        async with session.get(handle.admin_url("/metrics")) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            text = await resp.text()
    assert 'strangler_config_reloads_total{result="success"}' in text
    assert "strangler_requests_total{" in text


async def test_reload_endpoint_without_token_configured(
    proxy_factory: Factory, ports: tuple[int, int]
) -> None:
    handle = await proxy_factory(config_yaml(*ports), watch_interval=60)
    async with (
        aiohttp.ClientSession() as session,
        session.post(handle.admin_url("/admin/reload")) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    assert body == {**body, "ok": True, "changed": False, "version": handle.proxy.config.version}


async def test_readiness_is_false_once_stopping(
    proxy_factory: Factory, ports: tuple[int, int]
) -> None:
    handle = await proxy_factory(config_yaml(*ports), watch_interval=60)
    handle.proxy.stopping = True  # as stop() sets it first, before the drain
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(handle.admin_url("/health/ready")) as resp:
                assert resp.status == 503
            async with session.get(handle.admin_url("/health/live")) as resp:
                assert resp.status == 200
    finally:
        handle.proxy.stopping = False


# ---- the bearer token -----------------------------------------------------------------------
AUTH_CASES = {
    "no token": ({}, 401),
    "wrong token": ({"Authorization": "Bearer not-the-token"}, 401),
    "wrong scheme": ({"Authorization": f"Basic {TOKEN}"}, 401),
    "bare token": ({"Authorization": TOKEN}, 401),
    "right bearer token": ({"Authorization": f"Bearer {TOKEN}"}, 200),
}


async def test_reload_needs_the_bearer_token_which_is_never_logged(
    proxy_factory: Factory, ports: tuple[int, int]
) -> None:
    handle = await proxy_factory(config_yaml(*ports), admin_token=TOKEN, watch_interval=60)
    statuses = {}
    with structlog.testing.capture_logs() as logs:
        async with aiohttp.ClientSession() as session:
            for case, (headers, _) in AUTH_CASES.items():
                async with session.post(handle.admin_url("/admin/reload"), headers=headers) as resp:
                    statuses[case] = resp.status
                    if resp.status == 401:
                        assert resp.headers["WWW-Authenticate"] == "Bearer"
            for path in ("/admin/config", "/admin/routes", "/admin/breakers", "/health/ready"):
                async with session.get(handle.admin_url(path)) as resp:
                    assert resp.status == 200, path  # reads stay open
                    assert TOKEN not in await resp.text()
    assert statuses == {case: status for case, (_, status) in AUTH_CASES.items()}
    refused = [e for e in logs if e["event"] == "strangler.admin.unauthorised"]
    assert len(refused) == 4 and {e["path"] for e in refused} == {"/admin/reload"}
    logged = repr(logs) + "".join(str(line) for line in handle.access_lines())
    assert TOKEN not in logged and "not-the-token" not in logged


async def test_token_from_the_environment_in_a_serving_process(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    port, admin_port = free_port(), free_port()
    header = (
        f"version: 1\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
        f"admin: {{host: 127.0.0.1, port: {admin_port}, token_env: {TOKEN_ENV}}}\n"
    )
    path = tmp_path / "serve.yaml"
    path.write_text(config_yaml(*ports, header=header))
    env = {**os.environ, TOKEN_ENV: "env-s3cret"}
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "strangler.cli", "serve", "--config", str(path),
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, f"http://127.0.0.1:{admin_port}/health/ready", proc)
            url = f"http://127.0.0.1:{admin_port}/admin/reload"
            async with session.post(url) as resp:
                assert resp.status == 401
            async with session.post(url, headers={"Authorization": "Bearer nope"}) as resp:
                assert resp.status == 401
            async with session.post(url, headers={"Authorization": "Bearer env-s3cret"}) as resp:
                assert resp.status == 200
            async with session.get(f"http://127.0.0.1:{admin_port}/admin/config") as resp:
                assert resp.status == 200
                assert "env-s3cret" not in await resp.text()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    output = log_path.read_text()
    assert "strangler.admin.unauthorised" in output
    assert "env-s3cret" not in output and "nope" not in output


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


# ---- refusing an exposed admin listener without a token --------------------------------------
def _exposed_admin_config(tmp_path: Path, ports: tuple[int, int]) -> Path:
    header = (
        f"version: 1\nlisten: {{host: 127.0.0.1, port: {free_port()}}}\n"
        f"admin: {{host: 0.0.0.0, port: {free_port()}, token_env: {TOKEN_ENV}}}\n"
    )
    path = tmp_path / "exposed.yaml"
    path.write_text(config_yaml(*ports, header=header))
    return path


async def test_proxy_refuses_non_loopback_admin_without_token(
    tmp_path: Path, ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    proxy = Proxy(_exposed_admin_config(tmp_path, ports))
    with pytest.raises(StartupError, match=rf"0\.0\.0\.0.*not loopback.*\${TOKEN_ENV}"):
        await proxy.start()
    assert proxy.server is None and proxy.admin_runner is None  # nothing was bound


async def test_serve_refuses_non_loopback_admin_without_token(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "strangler.cli", "serve",
        "--config", str(_exposed_admin_config(tmp_path, ports)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode not in (0, None)
    message = stderr.decode()
    assert "not loopback" in message and TOKEN_ENV in message, message
    assert "Traceback" not in message
