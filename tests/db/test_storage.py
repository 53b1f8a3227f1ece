"""Migrations and the write path on plain PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from db import migrate as migrations
from db.migrate import Flavour, MigrationError, migrate
from db.readings import DeadLetter, ReadingBatch, clear_dirty, dirty_sensors, write_batch


async def test_migrate_is_idempotent_and_detects_flavour(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        first = await migrate(conn)
        again = await migrate(conn)
        available = await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
    finally:
        await conn.close()
    assert first.flavour is (Flavour.TIMESCALE if available else Flavour.PLAIN)
    assert first.applied == (
        "001_registry",
        "002_readings",
        "003_alerts",
        "004_rollups",
        "005_dirty_late",
        "006_drop_sensor_eval",
        "007_handling",
        "008_integrity",
        "009_notify",
        "010_mine_status",
        "018_reference",
        "019_corrections_reach",
    )
    assert again.applied == ()
    assert again.already == len(first.applied)


async def test_an_edited_migration_is_refused(db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        await migrate(conn, timescaledb="off")
        for src in migrations.MIGRATIONS_DIR.glob("*.sql"):
            (tmp_path / src.name).write_text(src.read_text())
        edited = tmp_path / "002_readings.sql"
        edited.write_text(edited.read_text() + "\n-- edited\n")
        monkeypatch.setattr(migrations, "MIGRATIONS_DIR", tmp_path)
        monkeypatch.setattr(migrations.load_migrations, "__defaults__", (tmp_path,))
        with pytest.raises(MigrationError, match="002_readings was changed after it was applied"):
            await migrate(conn, timescaledb="off")
    finally:
        await conn.close()


async def test_timescaledb_on_fails_clearly_without_the_extension(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        if await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"):
            pytest.fail("this test needs a server without TimescaleDB (the embedded PostgreSQL has none)")
        with pytest.raises(MigrationError, match="timescaledb extension is not available"):
            await migrate(conn, timescaledb="on")
    finally:
        await conn.close()


async def test_write_batch_counts_new_rows_marks_dirty_and_keeps_dead_letters(migrated_dsn: str) -> None:
    conn = await asyncpg.connect(migrated_dsn)
    try:
        batch = ReadingBatch()
        t0 = 1_790_000_000_000_000
        for i in (3, 1, 2, 1):  # out of order, one duplicate within the batch
            batch.add(7, "depth_m", t0 + i * 1_000_000, float(i), None)
        dead = [DeadLetter("t", b"\x00\xff", 2, False, "malformed_json", "payload is not JSON")]
        assert await write_batch(conn, batch, dead) == 3
        assert await write_batch(conn, batch, []) == 0
        rows = await conn.fetch("SELECT value FROM reading ORDER BY ts")
        assert [r["value"] for r in rows] == [1.0, 2.0, 3.0]
        latest = await conn.fetchrow("SELECT value FROM sensor_latest WHERE sensor_id = 7")
        assert latest["value"] == 3.0
        dirty = await dirty_sensors(conn, 10)
        # The redelivery brought readings older than the newest stored one: late (conservatively,
        # duplicates included).
        assert [(d.sensor_id, d.gen, d.late) for d in dirty] == [(7, 2, True)]
        assert dirty[0].min_ts.timestamp() == pytest.approx((t0 + 1_000_000) / 1e6)
        # A write after the worker read the mark keeps it; the stale clear is a no-op.
        await write_batch(conn, batch, [])
        await clear_dirty(conn, dirty)
        assert len(await dirty_sensors(conn, 10)) == 1
        assert await conn.fetchval("SELECT payload FROM dead_letter") == b"\x00\xff"
        # A reading older than the newest stored one is late; a newer one is not.
        await clear_dirty(conn, await dirty_sensors(conn, 10))
        newer = ReadingBatch()
        newer.add(7, "depth_m", t0 + 9_000_000, 9.0, None)
        await write_batch(conn, newer, [])
        assert [d.late for d in await dirty_sensors(conn, 10)] == [False]
        await clear_dirty(conn, await dirty_sensors(conn, 10))
        older = ReadingBatch()
        older.add(7, "depth_m", t0 + 5_000_000, 5.0, None)
        await write_batch(conn, older, [])
        assert [d.late for d in await dirty_sensors(conn, 10)] == [True]
    finally:
        await conn.close()
