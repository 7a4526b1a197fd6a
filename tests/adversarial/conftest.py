"""Fixtures of the hostile suite: recording upstreams on loopback, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.adversarial.wire import RecordingUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream().start()
    yield up
    await up.stop()


@pytest.fixture
async def orders() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream().start()
    yield up
    await up.stop()
