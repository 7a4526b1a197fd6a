"""Shared fixtures: real servers on loopback, the proxy started in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.harness import ProxyHandle, start_proxy


@pytest.fixture
async def proxy_factory(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[ProxyHandle]]]:
    started: list[ProxyHandle] = []

    async def factory(config_yaml: str, **kwargs: object) -> ProxyHandle:
        handle = await start_proxy(tmp_path, config_yaml, **kwargs)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        await handle.stop()
