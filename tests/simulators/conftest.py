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

from core.settings import MqttTarget
from tests.conftest import Mosquitto


@pytest.fixture(scope="session")
def mqtt_broker(mosquitto: Mosquitto) -> Mosquitto:
    """The session's mosquitto (tests/conftest.py), under the name these tests use."""
    return mosquitto


@pytest.fixture
def unique_mine() -> str:
    """A mine code no other test uses, so each test has its own topics."""
    return f"T{uuid.uuid4().hex[:12]}"


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to a target; ``cut()`` drops every link and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepting = True
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def mqtt_target(self) -> MqttTarget:
        return MqttTarget("127.0.0.1", self.port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)

    def cut(self) -> None:
        self.cuts += 1
        self.accepting = False
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.accepting = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def tcp_proxy(mqtt_broker: Mosquitto) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(mqtt_broker.host, mqtt_broker.port)
    await proxy.start()
    yield proxy
    await proxy.close()


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
