"""The API as an attacker meets it: a real uvicorn on loopback (in a thread with its own
event loop and its own database pool) over a seeded PostgreSQL, with tokens at two levels
of the region tree, and a raw HTTP/1.1 client that sends request targets byte for byte
(httpx would normalise ``..`` and percent-escapes away)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI

from api.app import create_app
from cli import runtime
from core.model import Level
from core.settings import Settings
from db.pool import open_pool
from tests.api.test_api import seed_alert, seed_readings
from tests.conftest import issue_token

#: The county of mine M1 (small_registry_doc); M1T lies in the other county, 220203.
OWN_COUNTY = "220102"
#: What a county token must never be shown: the other county's mine, its sensors, its code.
OTHER_COUNTY_MARKERS = ("M1T", "PZ01", "PL01", "220203")


@dataclass(frozen=True, slots=True)
class Seeded:
    """The test database with readings, one alert per county and tokens."""

    dsn: str
    settings: Settings
    admin: str  # admin at all
    county: str  # supervisor at county 220102: sees mine M1 only
    own_alert: int  # on M1
    other_alert: int  # on M1T, outside the county


@pytest.fixture
async def seeded(loaded_dsn: str, settings: Settings) -> Seeded:
    settings = dataclasses.replace(settings, summary_refresh_s=0)
    async with open_pool(loaded_dsn, settings) as pool:
        await seed_readings(pool)
        own = await seed_alert(pool, "GN01", Level.ORANGE)
        other = await seed_alert(pool, "PZ01", Level.RED, mine="M1T")
        admin = await issue_token(pool)
        county = await issue_token(pool, role="supervisor", scope_kind="region", scope_code=OWN_COUNTY)
    return Seeded(loaded_dsn, settings, admin, county, own, other)


@dataclass
class LiveApi:
    app: FastAPI
    host: str
    port: int
    scheme: str = "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@contextlib.contextmanager
def live_api(settings: Settings, dsn: str) -> Iterator[LiveApi]:
    """``slopewatch api``'s server (cli.runtime.api_server, TLS from the settings) in a thread."""
    app = create_app(settings, dsn=dsn)
    port = runtime.free_port()
    server = runtime.api_server(app, "127.0.0.1", port, tls_cert=settings.api_tls_cert, tls_key=settings.api_tls_key)
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield LiveApi(app, "127.0.0.1", port, "https" if settings.api_tls_cert else "http")
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "the API server did not stop"


@pytest.fixture
def api(seeded: Seeded) -> Iterator[LiveApi]:
    with live_api(seeded.settings, seeded.dsn) as server:
        yield server


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    port: int, method: str, target: bytes, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> RawResponse:
    """One HTTP/1.1 request with ``target`` exactly as given; the connection is closed after it."""
    head = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    if body:
        head.append(b"Content-Length: " + str(len(body)).encode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    raw = b"".join(chunks)
    header_block, _, payload = raw.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    parsed = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if parsed.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return RawResponse(status, parsed, payload)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)
