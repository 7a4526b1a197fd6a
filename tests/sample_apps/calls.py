"""Small request helpers for the sample-app tests (imported relatively by the test modules)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

Client = TestClient[web.Request, web.Application]


def base_url(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


async def json_of(client: Client, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """Status and decoded JSON body of one request."""
    async with client.request(method, path, **kwargs) as resp:
        return resp.status, await resp.json()


async def set_faults(client: Client, **config: Any) -> None:
    status, body = await json_of(client, "PUT", "/_faults", json=config)
    assert status == 200, body
