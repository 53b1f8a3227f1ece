"""Shared fixtures: a real PostgreSQL and a real MQTT broker, started by the tests.

PostgreSQL: ``SLOPEWATCH_TEST_DATABASE_URL`` if set, else a throwaway embedded server
(pip-installed). Every test gets its own database.
MQTT: mosquitto (Debian's package) on a free loopback port; every test its own topic
space through distinct mine codes or client ids.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from cli.runtime import free_port
from core.settings import MqttTarget, Settings
from db.migrate import migrate
from db.pool import embedded_postgres

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_root_dsn() -> Iterator[str]:
    given = os.environ.get("SLOPEWATCH_TEST_DATABASE_URL")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="slopewatch-pg-") as tmp, embedded_postgres(Path(tmp)) as dsn:
        yield dsn


@pytest.fixture
async def db_dsn(pg_root_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_root_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(pg_root_dsn, name)
    admin = await asyncpg.connect(pg_root_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def migrated_dsn(db_dsn: str) -> str:
    conn = await asyncpg.connect(db_dsn)
    try:
        await migrate(conn, timescaledb="off")
    finally:
        await conn.close()
    return db_dsn


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        mqtt_client_id=f"test-ingest-{uuid.uuid4().hex[:8]}",
        mqtt_shared_group="",
        batch_max_age_ms=50,
        analysis_interval_s=0.2,
        metrics_port=0,
    )


def mosquitto_binary() -> str:
    for path in (*MOSQUITTO_PATHS, shutil.which("mosquitto")):
        if path and Path(path).exists():
            return path
    raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (the test suite needs a real broker)")


class Mosquitto:
    """A throwaway mosquitto on 127.0.0.1; restartable with the same port (for fault tests)."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Started as root, mosquitto switches to the user "mosquitto", which cannot
            # write its persistence file or log here: stay who we are.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "allow_anonymous true\n"
            # ingest acknowledges after commit: it needs many messages in flight
            "max_inflight_messages 1000\n"
            "max_queued_messages 0\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            f"log_dest file {workdir}/mosquitto.log\n"
        )
        self.conf = conf

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def target(self) -> MqttTarget:
        return MqttTarget("127.0.0.1", self.port)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    with tempfile.TemporaryDirectory(prefix="slopewatch-mqtt-") as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        yield broker
        broker.stop()


async def wait_for(predicate: object, *, within_s: float = 20.0, interval: float = 0.05) -> None:
    """Poll an async or sync predicate until it is truthy."""
    deadline = time.monotonic() + within_s
    while True:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within_s} s")
        await asyncio.sleep(interval)


def small_registry_doc(mine: str = "M1") -> dict[str, object]:
    """One province, city and county; one open pit with a GNSS point and a rain gauge,
    one tailings pond with a piezometer and a pond-level gauge."""
    return {
        "regions": [
            {"code": "220000", "name": "Test Province"},
            {"code": "220100", "name": "Test City"},
            {"code": "220102", "name": "Test County"},
            {"code": "220200", "name": "Other City"},
            {"code": "220203", "name": "Other County"},
        ],
        "mines": [
            {
                "code": mine,
                "name": "Open pit one",
                "kind": "open_pit",
                "region": "220102",
                "evacuation": "停产撤人: evacuate the east bench",
                "sites": [
                    {
                        "code": f"{mine}-E",
                        "name": "East slope",
                        "kind": "slope",
                        "height_m": 240,
                        "sensors": [
                            {
                                "code": "GN01",
                                "kind": "gnss",
                                "interval_s": 3600,
                                "thresholds": {
                                    "horizontal_mm_per_day": {"blue": 2, "yellow": 5, "orange": 10, "red": 20}
                                },
                            },
                            {"code": "RG01", "kind": "rain", "interval_s": 600},
                        ],
                    }
                ],
            },
            {
                "code": f"{mine}T",
                "name": "Tailings pond",
                "kind": "tailings_pond",
                "region": "220203",
                "sites": [
                    {
                        "code": f"{mine}T-D",
                        "name": "Main dam",
                        "kind": "dam",
                        "crest_elevation_m": 1500,
                        "sensors": [
                            {
                                "code": "PZ01",
                                "kind": "piezometer",
                                "interval_s": 3600,
                                "thresholds": {"depth_m": {"blue": 8, "yellow": 6, "orange": 5.5, "red": 5}},
                            },
                            {
                                "code": "PL01",
                                "kind": "pond_level",
                                "interval_s": 3600,
                                "thresholds": {"level_m": {"yellow": 1496, "red": 1498}},
                            },
                        ],
                    }
                ],
            },
        ],
    }


@pytest.fixture
async def loaded_dsn(migrated_dsn: str) -> str:
    """A migrated database with :func:`small_registry_doc` loaded."""
    from core.registry import parse_registry
    from db.registry import load_registry

    conn = await asyncpg.connect(migrated_dsn)
    try:
        await load_registry(conn, parse_registry(small_registry_doc()))
    finally:
        await conn.close()
    return migrated_dsn


async def issue_token(pool: asyncpg.Pool, *, role: str = "admin", scope_kind: str = "all", scope_code: str = "") -> str:
    """A fresh API token (its secret) for tests."""
    from db import tokens

    async with pool.acquire() as conn:
        _, secret = await tokens.create(
            conn, name=f"test {role} {scope_kind} {scope_code}", role=role, scope_kind=scope_kind, scope_code=scope_code
        )
    return secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
