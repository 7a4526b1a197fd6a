"""The `strangler` command line: validate, routes, explain in process; serve as a real process.

`serve` is started with `python -m strangler.cli` on a temp config with free loopback ports, must
answer through the proxy and on /health/ready, and exit 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from strangler.cli import main
from tests.harness import ProxyHandle, echo_app, free_port, start_app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "routes.yaml"
INVALID = ROOT / "tests" / "fixtures" / "configs" / "invalid"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# ---- validate -----------------------------------------------------------------------------
def test_validate_example_config_ok() -> None:
    code, out, _ = run_cli("validate", str(EXAMPLE))
    assert code == 0
    assert out.startswith(f"{EXAMPLE}: ok (")


def test_validate_minimal_and_example_together() -> None:
    code, out, _ = run_cli("validate", str(EXAMPLE), str(ROOT / "config" / "minimal.yaml"))
    assert code == 0
    assert len(out.splitlines()) == 2


ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+) (?P<key>[\w\[\].()\- ]+): (?P<msg>.+)$")


def test_validate_invalid_file_lists_every_error_located() -> None:
    path = INVALID / "many_errors.yaml"
    code, out, _ = run_cli("validate", str(path))
    assert code == 1
    lines = out.splitlines()
    assert len(lines) >= 5
    for line in lines:
        match = ERROR_LINE.match(line)
        assert match, line
        assert match["file"] == str(path)
    located = {(int(m["line"]), m["key"]) for m in map(ERROR_LINE.match, lines) if m}
    assert (3, "listen.port") in located
    assert (27, "routes[1].upstream") in located
    assert any("did you mean 'timeout'" in line for line in lines)


def test_validate_mixed_files_exits_1_but_reports_the_good_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nupstreams:\n  legacy: {url: 'ftp://x', role: legacy}\n")
    code, out, _ = run_cli("validate", str(EXAMPLE), str(bad))
    assert code == 1
    assert f"{EXAMPLE}: ok" in out
    assert re.search(rf"^{re.escape(str(bad))}:3 upstreams\.legacy\.url: ", out, re.M)


def test_validate_missing_file(tmp_path: Path) -> None:
    code, out, err = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert "nope.yaml" in out + err
    assert "Traceback" not in out + err


# ---- routes -------------------------------------------------------------------------------
def test_routes_prints_the_table() -> None:
    code, out, _ = run_cli("routes", "--config", str(EXAMPLE))
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "NAME",
        "STAGE",
        "MATCH",
        "UPSTREAM",
        "EXTRACTED_SHARE",
        "FALLBACK",
        "SHADOW",
    ]
    names = [row.split()[0] for row in rows]
    assert names == [
        "inventory",
        "orders-update",
        "orders-lookup",
        "orders",
        "payments",
        "shipping",
        "default",
    ]
    by_name = {row.split()[0]: row for row in rows}
    assert "migrated" in by_name["inventory"] and "prefix /api/inventory" in by_name["inventory"]
    assert "orders 20% / legacy 80%" in by_name["orders"]
    assert "orders 100%" in by_name["orders-lookup"]


def test_routes_json() -> None:
    code, out, _ = run_cli("routes", "--config", str(EXAMPLE), "--json")
    assert code == 0
    rows = json.loads(out)
    inventory = next(r for r in rows if r["name"] == "inventory")
    assert inventory["stage"] == "migrated"
    assert inventory["extracted_share"] == 100.0
    assert inventory["fallback"] == "legacy"


# ---- explain ------------------------------------------------------------------------------
EXPLAIN_CASES = [
    # (id, argv after the config, expected substrings of the verdict line)
    (
        "shadowed-lookup",
        ["GET", "/api/orders/7"],
        ["route orders-lookup", "stage shadow", "upstream legacy", "shadowed to orders"],
    ),
    ("patch-legacy", ["PATCH", "/api/orders/7"], ["route orders-update", "upstream legacy"]),
    ("canary-list", ["GET", "/api/orders"], ["route orders", "split orders 20%, legacy 80%"]),
    (
        "migrated",
        ["POST", "/api/inventory/reservations"],
        ["route inventory", "upstream inventory", "fallback legacy"],
    ),
    ("default", ["GET", "/catalog"], ["route default", "upstream legacy"]),
    ("normalised", ["GET", "/api/x/../inventory/1"], ["route inventory"]),
]


@pytest.mark.parametrize(
    ("argv", "expected"), [c[1:] for c in EXPLAIN_CASES], ids=[c[0] for c in EXPLAIN_CASES]
)
def test_explain_names_route_and_upstream(argv: list[str], expected: list[str]) -> None:
    code, out, _ = run_cli("explain", "--config", str(EXAMPLE), *argv)
    assert code == 0
    verdict = out.splitlines()[-1]
    for text in expected:
        assert text in verdict, verdict


def test_explain_unsafe_target_says_400() -> None:
    code, out, _ = run_cli("explain", "--config", str(EXAMPLE), "GET", "/api/a%2Fb")
    assert code == 0
    assert "400" in out and "encoded_slash" in out


# ---- serve as a real process --------------------------------------------------------------
@pytest.fixture
async def backend() -> AsyncIterator[int]:
    runner, port = await start_app(echo_app("legacy"))
    yield port
    await runner.cleanup()


@contextlib.contextmanager
def serving(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env.pop("STRANGLER_ADMIN_TOKEN", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        [sys.executable, "-m", "strangler.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=config.parent,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()


async def wait_ready(url: str, process: subprocess.Popen[bytes], limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.poll() is None, "strangler serve exited early"
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("strangler serve never became ready")


async def test_serve_proxies_reports_ready_and_exits_0_on_sigterm(
    tmp_path: Path, backend: int
) -> None:
    port, admin_port = free_port(), free_port()
    config = tmp_path / "strangler.yaml"
    config.write_text(
        f"""version: 1
listen: {{host: 127.0.0.1, port: {port}}}
admin: {{host: 127.0.0.1, port: {admin_port}}}
logging: {{access: {{enabled: false}}}}
shutdown: {{drain_timeout: 2s}}
upstreams:
  legacy: {{url: "http://127.0.0.1:{backend}", role: legacy}}
default:
  upstream: legacy
"""
    )
    with serving(config) as process:
        await wait_ready(f"http://127.0.0.1:{admin_port}/health/ready", process)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/hello?x=1") as resp,
        ):
            assert resp.status == 200
            data = await resp.json()
        assert data["upstream"] == "legacy" and data["path"] == "/hello?x=1"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{admin_port}/health/live") as live,
        ):
            assert live.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 10) == 0
        assert process.stderr is not None
        assert b"Traceback" not in process.stderr.read()


def test_serve_invalid_config_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("version: 1\nupstreams: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "strangler.cli", "serve", "--config", str(config)],
        capture_output=True,
        timeout=20,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    assert b"bad.yaml" in result.stderr
    assert b"Traceback" not in result.stderr


async def test_progress_reports_share_stages_and_legacy_paths_from_a_running_proxy(
    proxy_factory: Callable[..., Awaitable[ProxyHandle]],
) -> None:
    legacy_runner, legacy = await start_app(echo_app("legacy"))
    orders_runner, orders = await start_app(echo_app("orders"))
    try:
        proxy = await proxy_factory(
            f"""
            upstreams:
              legacy: {{url: "http://127.0.0.1:{legacy}", role: legacy}}
              orders: {{url: "http://127.0.0.1:{orders}", role: extracted}}
            routes:
              - name: orders
                match: {{path_prefix: /api/orders}}
                upstream: orders
                fallback: {{upstream: legacy}}
            default: {{upstream: legacy}}
            """
        )
        async with aiohttp.ClientSession() as session:
            for n in range(3):
                async with session.get(proxy.url(f"/api/orders/{n}")) as resp:
                    assert resp.status == 200
            for n in range(5):
                async with session.get(proxy.url(f"/api/payments/{n + 100}")) as resp:
                    assert resp.status == 200
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "strangler.cli",
            "progress",
            "--admin",
            proxy.admin_url(""),
            "--top",
            "5",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        text = out.decode()
        # 3 of 8 requests went to the extracted service.
        assert "traffic served by extracted services (last 5 min): 37.5%" in text
        assert "migrated 50%" in text and "legacy 50%" in text
        assert "5  /api/payments/{id}  (default)" in text
        lines = [line.split() for line in text.splitlines()]
        assert ["orders", "migrated", "100%", "100.0%"] in lines
        assert ["default", "legacy", "0%", "0.0%"] in lines
    finally:
        await legacy_runner.cleanup()
        await orders_runner.cleanup()


async def test_progress_reports_an_unreachable_proxy_clearly() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.cli",
        "progress",
        "--admin",
        f"http://127.0.0.1:{free_port()}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert b"cannot reach" in err and b"Traceback" not in err
