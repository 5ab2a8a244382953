"""The pytest plugin of `stadium.testing` (registered by the `stadium` distribution): the
`stadium_relay` fixture starts `LocalRelay`s for a test and stops them after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest_asyncio

from relay import Room
from stadium.testing import LocalRelay

StartRelay = Callable[..., Awaitable[LocalRelay]]


@pytest_asyncio.fixture
async def stadium_relay() -> AsyncIterator[StartRelay]:  # pytest-asyncio: in the [dev] extra
    """`await stadium_relay({"type": RoomClass, ...}, **LocalRelay options)`: a started
    relay with those room types, stopped when the test ends."""
    started: list[LocalRelay] = []

    async def start(rooms: Mapping[str, type[Room]], **options: Any) -> LocalRelay:
        relay = await LocalRelay(rooms, **options).start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await relay.stop()
