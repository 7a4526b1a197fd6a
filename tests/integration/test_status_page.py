"""The status page in a real headless Chromium, served by a proxy's admin listener (issue 7).

The page must load from the admin origin alone, show the running config's routes and stages, update
itself after traffic (it polls every 2 s), list a shadow mismatch with its differing field, and
insert upstream-controlled text as text (the shadow backend answers with HTML in a JSON field).
Skipped when Chromium or Playwright is missing, unless STRANGLER_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.harness import ProxyHandle, free_port, start_app

ProxyFactory = Callable[..., Awaitable[ProxyHandle]]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = "/tmp/status.png"
HOSTILE = "<img src=/xss onerror=window.__xss=1>"
POLL_WAIT_MS = 8000  # the page polls every 2 s; allow a few polls


def _require_browser() -> Any:
    """The playwright async API, or a skip (a failure when tools are required)."""
    try:
        from playwright import async_api
    except ImportError:
        async_api = None
    missing = async_api is None or not (os.path.exists(CHROMIUM) or shutil.which("chromium"))
    if missing:
        reason = "chromium (apt-get install chromium) or playwright (pip) is missing"
        if os.environ.get("STRANGLER_REQUIRE_TOOLS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return async_api


def _app(body: dict[str, object]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.fixture
async def proxy(proxy_factory: ProxyFactory) -> AsyncIterator[ProxyHandle]:
    legacy_runner, legacy = await start_app(_app({"served_by": "legacy", "total": 10}))
    orders_runner, orders = await start_app(_app({"served_by": HOSTILE, "total": 10}))
    handle = await proxy_factory(f"""
    upstreams:
      legacy: {{url: http://127.0.0.1:{legacy}, role: legacy}}
      orders: {{url: http://127.0.0.1:{orders}, role: extracted}}
      dead: {{url: http://127.0.0.1:{free_port()}, role: extracted, connect_timeout: 500ms}}
    routes:
      - name: catalog
        match: {{path_prefix: /api/catalog}}
        upstream: legacy
      - name: lookups
        match: {{path_prefix: /api/lookups}}
        upstream: legacy
        shadow: {{upstream: orders, percent: 100}}
      - name: checkout
        match: {{path_prefix: /api/checkout}}
        upstream: legacy
        split:
          targets:
            - {{upstream: orders, weight: 25}}
            - {{upstream: legacy, weight: 75}}
          sticky: {{header: X-User}}
      - name: payments
        stage: migrated
        match: {{path_prefix: /api/payments}}
        upstream: dead
        fallback: {{upstream: legacy}}
        breaker: {{consecutive_failures: 2, open_duration: 60s}}
      - name: inventory
        match: {{path_prefix: /api/inventory}}
        upstream: orders
    default: {{upstream: legacy}}
    """)
    yield handle
    await handle.stop()
    await legacy_runner.cleanup()
    await orders_runner.cleanup()


@dataclass
class PageWatch:
    """What the page did besides rendering: console errors and every URL it requested."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


async def _send(proxy: ProxyHandle, paths: list[str]) -> None:
    async with aiohttp.ClientSession() as session:
        for path in paths:
            async with session.get(proxy.url(path)) as response:
                await response.read()


async def test_status_page_shows_routes_updates_and_mismatches(proxy: ProxyHandle) -> None:
    async_api = _require_browser()
    watch = PageWatch()
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 900})
            page.on(
                "console",
                lambda m: watch.console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: watch.console_errors.append(str(e)))
            page.on("request", lambda r: watch.requests.append(r.url))
            await page.goto(proxy.admin_url("/status"))
            await page.wait_for_selector("body[data-polls]", timeout=POLL_WAIT_MS)

            # The running config's routes, each with its stage badge.
            stages = {
                "catalog": "legacy",
                "lookups": "shadow",
                "checkout": "canary",
                "payments": "migrated",
                "inventory": "retired",
                "default": "legacy",
            }
            for route, stage in stages.items():
                row = page.locator(f'tr[data-route="{route}"]')
                await row.wait_for(state="visible")
                assert await row.locator(".route-name").text_content() == route
                assert await row.locator('[data-field="stage"]').text_content() == stage
            assert await page.locator("#version").text_content() == proxy.proxy.config.version
            catalog_requests = page.locator('tr[data-route="catalog"] [data-field="requests"]')
            assert await catalog_requests.text_content() == "0"

            # Traffic: counts, fallbacks, breaker state and a shadow mismatch show up on a poll.
            polls = int(await page.locator("body").get_attribute("data-polls") or "0")
            await _send(
                proxy,
                [f"/api/catalog/{i}" for i in range(5)]
                + ["/api/payments/1", "/api/payments/2", "/api/lookups/7?x=1"],
            )
            await page.wait_for_function(
                "n => Number(document.body.dataset.polls) > n + 1", arg=polls, timeout=POLL_WAIT_MS
            )
            assert await catalog_requests.text_content() == "5"
            payments = page.locator('tr[data-route="payments"]')
            assert await payments.locator('[data-field="fallbacks"]').text_content() == "2"
            assert await payments.locator(".breaker.br-open").text_content() == "dead: open"
            await page.wait_for_selector(".mismatch", timeout=POLL_WAIT_MS)
            mismatch = page.locator(".mismatch").first
            assert "GET /api/lookups/7?x=1" in (
                await mismatch.locator(".path").text_content() or ""
            )
            row = mismatch.locator('tr[data-field-name="$.served_by"]')
            assert await row.locator("td.primary").text_content() == '"legacy"'
            # Upstream-controlled HTML is shown as text, never parsed.
            assert await row.locator("td.shadow").text_content() == f'"{HOSTILE}"'
            assert await page.locator("#mismatches img").count() == 0
            assert await page.evaluate("window.__xss") is None
            lookups_match = page.locator('tr[data-route="lookups"] [data-field="match-rate"]')
            assert await lookups_match.text_content() == "0.0% match"

            # A failed reload is shown with its error while the old config keeps serving.
            proxy.config_path.write_text(proxy.config_path.read_text() + "routes: [oops\n")
            assert not (await proxy.proxy.reload("test")).ok
            error_box = page.locator("#reload-error")
            await error_box.wait_for(state="visible", timeout=POLL_WAIT_MS)
            assert "invalid YAML" in (await error_box.locator("li").first.text_content() or "")
            assert "failed" in (await page.locator("#last-reload").text_content() or "")

            await page.locator(".mismatch details > summary").first.click()
            await page.screenshot(path=SCREENSHOT, full_page=True)
        finally:
            await browser.close()

    assert watch.console_errors == []
    origin = proxy.admin_url("/")
    assert [url for url in watch.requests if not url.startswith(origin)] == []
    assert not [url for url in watch.requests if "/xss" in url]


async def test_status_json_counts_per_route(proxy: ProxyHandle) -> None:
    await _send(proxy, ["/api/catalog/1", "/api/payments/1", "/api/payments/2", "/api/payments/3"])
    async with (
        aiohttp.ClientSession() as session,
        session.get(proxy.admin_url("/admin/status")) as response,
    ):
        assert response.status == 200
        data = await response.json()

    routes = {r["name"]: r for r in data["routes"]}
    assert data["version"] == proxy.proxy.config.version
    assert data["last_reload"] is None and data["overall"]["last_error"] is None
    assert routes["catalog"]["counts"]["requests"] == 1
    payments = routes["payments"]["counts"]
    # Two refused attempts open the breaker; all three requests are served by the fallback.
    assert (payments["requests"], payments["fallbacks"], payments["upstream_errors"]) == (3, 3, 2)
    assert routes["payments"]["breakers"]["dead"]["state"] == "open"
