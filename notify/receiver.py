"""A small webhook receiver that verifies signatures: ``slopewatch notify receive`` (to point
the demo's webhooks at something) and the reference for writing one. Standard library
only; HTTP/1.1, one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from notify.signing import DEFAULT_TOLERANCE_S, SIGNATURE_HEADER, SignatureError, verify

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Received:
    at_s: float
    path: str
    headers: dict[str, str]
    body: bytes
    #: None when the receiver has no secret to check with
    verified: bool | None
    error: str | None

    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc


@dataclass
class WebhookReceiver:
    """Listens on ``host:port`` (0: a free port); answers ``status`` after ``delay_s``.
    A request whose signature does not verify gets 401 and is recorded with the reason."""

    secret: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    status: int = 200
    delay_s: float = 0.0
    tolerance_s: float = DEFAULT_TOLERANCE_S
    on_receive: Callable[[Received], None] | None = None
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status = await self._serve_one(reader)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized"}.get(status, "Status")
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            logger.warning("webhook receiver: bad request error=%r", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader) -> int:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _method, path, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY_BYTES:
            raise ValueError(f"body of {length} bytes is too large")
        body = await reader.readexactly(length)
        verified: bool | None = None
        error: str | None = None
        if self.secret is not None:
            try:
                verify(self.secret, headers.get(SIGNATURE_HEADER.lower(), ""), body, now_s=time.time(),
                       tolerance_s=self.tolerance_s)  # fmt: skip
                verified = True
            except SignatureError as exc:
                verified, error = False, f"{exc.reason}: {exc}"
        item = Received(time.monotonic(), path, headers, body, verified, error)
        self.received.append(item)
        if self.on_receive is not None:
            self.on_receive(item)
        if verified is False:
            return 401
        return self.status
