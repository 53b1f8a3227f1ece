"""A real MQTT broker for tests: mosquitto on 127.0.0.1 with a free port, plus a TCP proxy to cut links.

``mqtt_broker`` is one mosquitto for the session; give each test its own topics
(its own mine code, see ``unique_mine``). ``mqtt_collect(filters)`` subscribes a
real aiomqtt client (QoS 1) and collects what arrives. ``tcp_proxy`` sits between
a client and the broker so a test can cut the client's connection without
touching the broker.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import aiomqtt
import pytest

from tests.conftest import Mosquitto
from tests.support.proxy import FaultProxy, running_proxy


@pytest.fixture(scope="session")
def mqtt_broker(mosquitto: Mosquitto) -> Mosquitto:
    """The session's mosquitto (tests/conftest.py), under the name these tests use."""
    return mosquitto


@pytest.fixture
def unique_mine() -> str:
    """A mine code no other test uses, so each test has its own topics."""
    return f"T{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def tcp_proxy(mqtt_broker: Mosquitto) -> AsyncIterator[FaultProxy]:
    async with running_proxy(host=mqtt_broker.host, port=mqtt_broker.port) as proxy:
        yield proxy


@dataclass(frozen=True)
class Received:
    wall_s: float
    topic: str
    payload: bytes


class Collected(list[Received]):
    async def wait_for(self, n: int, timeout_s: float = 10.0) -> None:
        """Until ``n`` messages are in (or the timeout), then a little longer: more than ``n`` is a bug to see."""
        deadline = time.monotonic() + timeout_s
        while len(self) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)


@asynccontextmanager
async def _collecting(broker: Mosquitto, filters: Iterable[str]) -> AsyncIterator[Collected]:
    got = Collected()
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for f in filters:
            await client.subscribe(f, qos=1)

        async def pump() -> None:
            async for msg in client.messages:
                assert isinstance(msg.payload, bytes)
                got.append(Received(time.time(), str(msg.topic), msg.payload))

        task = asyncio.create_task(pump())
        try:
            yield got
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def mqtt_collect(
    mqtt_broker: Mosquitto,
) -> Callable[[Iterable[str]], AbstractAsyncContextManager[Collected]]:
    """``async with mqtt_collect([filter, ...]) as got:`` subscribed before the body runs."""
    return functools.partial(_collecting, mqtt_broker)
