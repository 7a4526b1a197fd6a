"""Helpers for integration tests: start the proxy on free loopback ports, talk raw HTTP to it.

Everything here uses real sockets on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import textwrap
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from strangler.app import Proxy

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now, and never handed out before in this test run.

    The kernel may give a just-released port again: a test that uses one free port as a refusing
    upstream and then starts a proxy could otherwise find the proxy listening on "the refusing
    port" (and its request routed back through the proxy itself).
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class ProxyHandle:
    def __init__(self, proxy: Proxy, config_path: Path, access: io.StringIO) -> None:
        self.proxy = proxy
        self.config_path = config_path
        self.access = access

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def admin_port(self) -> int:
        return self.proxy.admin_port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def admin_url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def access_lines(self) -> list[dict[str, Any]]:
        self.proxy.access.flush()
        return [json.loads(line) for line in self.access.getvalue().splitlines() if line]

    def metric(self, name: str, **labels: str) -> float:
        value = self.proxy.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def stop(self) -> None:
        if not self.proxy.stopping:
            await self.proxy.stop()


def render_config(template: str, **ports: int) -> str:
    text = textwrap.dedent(template)
    for name, value in ports.items():
        text = text.replace("{" + name + "}", str(value))
    return text


async def start_proxy(
    tmp_path: Path, config_yaml: str, *, admin_token: str | None = None, **kwargs: Any
) -> ProxyHandle:
    text = textwrap.dedent(config_yaml)
    if "listen:" not in text:
        text = f"listen: {{host: 127.0.0.1, port: {free_port()}}}\n" + text
    if "admin:" not in text:
        text = f"admin: {{host: 127.0.0.1, port: {free_port()}}}\n" + text
    if "version:" not in text:
        text = "version: 1\n" + text
    path = tmp_path / f"strangler-{free_port()}.yaml"
    path.write_text(text)
    access = io.StringIO()
    proxy = Proxy(
        path, registry=CollectorRegistry(), access_stream=access, admin_token=admin_token, **kwargs
    )
    await proxy.start()
    return ProxyHandle(proxy, path, access)


async def start_app(app: web.Application, port: int | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def echo_app(name: str) -> web.Application:
    """A backend that answers with what it received (name, method, path, headers, body size)."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "upstream": name,
                "method": request.method,
                "path": request.raw_path,
                "headers": [[k, v] for k, v in request.raw_headers_decoded()]
                if hasattr(request, "raw_headers_decoded")
                else [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
                "body_len": len(body),
            }
        )

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


async def raw_exchange(
    port: int, data: bytes, *, timeout: float = 2.0, half_close: bool = False
) -> bytes:
    """Send raw bytes and read until the peer closes or `timeout` passes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if half_close:
        writer.write_eof()
    chunks = []
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        writer.close()
    return b"".join(chunks)


class RawUpstream:
    """A loopback TCP server whose behaviour per connection is a coroutine the test supplies.

    It records every byte it receives, so tests can assert what the proxy forwarded.
    """

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        self.received: list[bytes] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.behaviour(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.received.append(head)
        return head

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers (last wins) and body of the first response in `raw`."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
