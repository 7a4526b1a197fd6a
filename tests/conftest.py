"""Shared fixtures: real servers on loopback, the proxy started in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

import strangler
from tests.harness import ProxyHandle, start_proxy


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled modules older than their source (an edit since the last build)."""
    package = Path(strangler.__file__).parent
    stale = [
        name
        for name in strangler.COMPILED_MODULES
        for so in package.glob(f"{name}.*.so")
        if (package / f"{name}.py").stat().st_mtime > so.stat().st_mtime
    ]
    if stale:
        pytest.exit(
            f"{', '.join(f'strangler/{name}.py' for name in stale)} changed since the last "
            "compiled build: rebuild with "
            "`pip install -e .` (or `STRANGLER_PURE_PYTHON=1 pip install -e .` to run them "
            "interpreted)",
            returncode=4,
        )


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
