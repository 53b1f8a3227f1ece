"""Versioned, idempotent schema migrations.

Files in ``db/migrations`` are named ``NNN_name.sql`` (every database),
``NNN_name.plain.sql`` (plain PostgreSQL only) or ``NNN_name.timescale.sql``
(TimescaleDB only). Each applies once, in its own transaction, and is recorded with
a checksum: a file edited after it was applied is an error, not a silent drift.

A database keeps the flavour it was created with: a plain database stays plain
even if TimescaleDB is installed later (converting is an explicit operator step,
see docs/storage.md).
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from db.pool import Conn

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_LOCK_KEY = 7_263_541_001


class Flavour(enum.StrEnum):
    PLAIN = "plain"
    TIMESCALE = "timescale"


class MigrationError(Exception):
    """Migrations cannot proceed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    only: Flavour | None
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationReport:
    flavour: Flavour
    applied: tuple[str, ...]
    already: int
    timescaledb_version: str | None


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    out: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name} is not named NNN_name[.plain|.timescale].sql")
        only = Flavour(m.group(3)) if m.group(3) else None
        out.append(Migration(int(m.group(1)), m.group(2), only, path.read_text(encoding="utf-8")))
    return out


async def detect_flavour(conn: Conn, want: str = "auto") -> Flavour:
    """``want`` is auto, on or off (SLOPEWATCH_TIMESCALEDB)."""
    recorded = await _recorded_flavour(conn)
    if recorded is not None:
        if want == "on" and recorded is Flavour.PLAIN:
            raise MigrationError(
                "this database was created as plain PostgreSQL; TimescaleDB cannot be switched on by migrate "
                "(see docs/storage.md for the conversion)"
            )
        return recorded
    if want == "off":
        return Flavour.PLAIN
    available = await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
    if available:
        return Flavour.TIMESCALE
    if want == "on":
        raise MigrationError("SLOPEWATCH_TIMESCALEDB=on but the timescaledb extension is not available on this server")
    return Flavour.PLAIN


async def migrate(conn: Conn, *, timescaledb: str = "auto") -> MigrationReport:
    """Bring the schema up to date. Safe to run concurrently: one runner waits for the other."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   flavour    text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        flavour = await detect_flavour(conn, timescaledb)
        if flavour is Flavour.TIMESCALE:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        done = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
        applied: list[str] = []
        already = 0
        for mig in load_migrations():
            if mig.only is not None and mig.only is not flavour:
                continue
            row = done.get(mig.version)
            if row is not None:
                if row["checksum"] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:03d}_{mig.name} was changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                already += 1
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, flavour, checksum) VALUES ($1, $2, $3, $4)",
                    mig.version,
                    mig.name,
                    flavour.value,
                    mig.checksum,
                )
            logger.info("applied migration version=%03d name=%s flavour=%s", mig.version, mig.name, flavour)
            applied.append(f"{mig.version:03d}_{mig.name}")
        version = None
        if flavour is Flavour.TIMESCALE:
            version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        return MigrationReport(flavour, tuple(applied), already, version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def apply_policies(conn: Conn, *, compress_after_days: int, retention_days: int | None) -> None:
    """TimescaleDB compression and retention policies; a no-op on plain PostgreSQL."""
    if await _recorded_flavour(conn) is not Flavour.TIMESCALE:
        return
    await conn.execute(
        "SELECT add_compression_policy('reading', make_interval(days => $1), if_not_exists => true)",
        compress_after_days,
    )
    await conn.execute("SELECT remove_retention_policy('reading', if_exists => true)")
    if retention_days is not None:
        await conn.execute(
            "SELECT add_retention_policy('reading', make_interval(days => $1))",
            retention_days,
        )


async def _recorded_flavour(conn: Conn) -> Flavour | None:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return None
    value = await conn.fetchval("SELECT flavour FROM schema_migrations ORDER BY version LIMIT 1")
    return Flavour(value) if value else None
