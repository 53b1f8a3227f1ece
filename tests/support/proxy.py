"""A TCP fault proxy for tests, in the spirit of asyncpg's: put it between a client and a
real server (TCP or a Unix socket) to cut, refuse or black-hole the link."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from core.settings import MqttTarget


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to a TCP or Unix-socket upstream.

    ``cut()`` resets every link and refuses new ones (a crashed peer, or a firewall that
    rejects). ``freeze()`` turns every link, open or new, into a black hole: bytes are
    dropped, nothing is reset (a partition, or a peer that vanished without a word).
    ``restore()`` lets new links through again; a link frozen once stays dead, as a TCP
    connection to a host that rebooted does.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, unix_path: str | None = None) -> None:
        self._upstream_host = host
        self._upstream_port = port
        self._unix_path = unix_path
        self.port = 0
        self.cuts = 0
        self._refusing = False
        self._freezing = False
        self._links: dict[int, list[asyncio.StreamWriter]] = {}
        self._dead: set[int] = set()
        self._next_link = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def mqtt_target(self) -> MqttTarget:
        return MqttTarget("127.0.0.1", self.port)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._unix_path is not None:
            return await asyncio.open_unix_connection(self._unix_path)
        return await asyncio.open_connection(self._upstream_host, self._upstream_port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        link = self._next_link
        self._next_link += 1
        self._links[link] = [writer]
        if self._freezing:
            self._dead.add(link)
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.transport.abort()
            del self._links[link]
            return
        self._links[link].append(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(link, src, dst), name="fault-proxy-pipe")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, link: int, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if link in self._dead:
                    continue  # dropped on the floor
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass  # the link is gone; closing below is all there is to do
        finally:
            if link not in self._dead:
                dst.close()
            self._links.pop(link, None)

    def cut(self) -> None:
        """Reset every link and stop listening: connecting fails with ECONNREFUSED."""
        self.cuts += 1
        self._refusing = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for writers in self._links.values():
            for w in writers:
                w.transport.abort()
        self._links.clear()

    def freeze(self) -> None:
        self._freezing = True
        self._dead.update(self._links)

    async def restore(self) -> None:
        self._refusing = False
        self._freezing = False
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        self._dead.clear()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def running_proxy(**upstream: Any) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(**upstream)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def proxied_dsn(dsn: str, proxy: FaultProxy) -> str:
    """The DSN of the same database, reached through ``proxy`` on 127.0.0.1."""
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{userinfo}127.0.0.1:{proxy.port}", parts.path, "", ""))


@contextlib.asynccontextmanager
async def database_proxy(dsn: str) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the test database (TCP, or the embedded server's Unix socket)."""
    parts = urlsplit(dsn)
    socket_dir = parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
    if socket_dir.startswith("/"):
        upstream: dict[str, Any] = {"unix_path": f"{socket_dir}/.s.PGSQL.{parts.port or 5432}"}
    else:
        upstream = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 5432}
    async with running_proxy(**upstream) as proxy:
        yield proxy
