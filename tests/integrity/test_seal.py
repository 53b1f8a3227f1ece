"""Sealing and verification on a real PostgreSQL: chains, supplements, tampering, corrections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from core.settings import Settings
from db import integrity
from db.integrity import SealPolicy, block_digests, check_links, seal_pass, verify_sensor
from db.pool import open_pool
from db.readings import ReadingBatch, write_batch
from tests.integrity.support import SEAL_ALL, T0, sensor_id, us, write_hourly

WINDOW = (T0, T0 + timedelta(days=3))


@pytest.fixture
async def pool(loaded_dsn: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(loaded_dsn, settings) as p:
        yield p


async def test_seal_covers_settled_blocks_once_and_matches_the_reference_encoding(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        sid = await sensor_id(conn, "GN01")
        assert await write_hourly(conn, sid, 48) == 144
    # The sensor is live (just received): blocks are sealed once its data is 10 min past their end.
    report = await seal_pass(pool, SealPolicy(settle_s=0.0))
    assert (report.sensors, report.seals, report.supplements, report.rows) == (1, 46, 0, 138)
    again = await seal_pass(pool, SealPolicy(settle_s=0.0))
    assert (again.seals, again.supplements) == (0, 0)
    async with pool.acquire() as conn:
        chain = await integrity.chain(conn, sid)
        assert [e.seq for e in chain] == list(range(1, 47))
        assert [e.block_start for e in chain] == [T0 + timedelta(hours=h) for h in range(46)]
        assert check_links(chain, sid) is None
        rows = await conn.fetch(
            "SELECT channel, ts, value, seq, received_at FROM reading WHERE sensor_id = $1 AND ts < $2",
            sid,
            T0 + timedelta(hours=1),
        )
        n, digest, keys = block_digests([tuple(r) for r in rows])
        assert (chain[0].n_rows, chain[0].digest, chain[0].keys_digest) == (n, digest, keys) == (3, digest, keys)
        result = await verify_sensor(conn, sid, *WINDOW)
        assert result.status == "OK"
        assert (result.entries, result.blocks_checked, result.rows_checked, result.pending_rows) == (46, 46, 138, 6)
    # Silent for long enough (idle_s=0): the last two blocks are sealed too.
    rest = await seal_pass(pool, SEAL_ALL)
    assert (rest.seals, rest.rows) == (2, 6)


async def test_late_reading_gets_a_supplement_not_a_finding(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        sid = await sensor_id(conn, "GN01")
        await write_hourly(conn, sid, 24)
    assert (await seal_pass(pool, SEAL_ALL)).seals == 24
    async with pool.acquire() as conn:
        late = ReadingBatch()
        late.add(sid, "east_mm", us(T0 + timedelta(hours=5, minutes=30)), 5.5, 999)
        assert await write_batch(conn, late, []) == 1
    report = await seal_pass(pool, SEAL_ALL)
    assert (report.seals, report.supplements, report.rows) == (0, 1, 1)
    async with pool.acquire() as conn:
        block5 = [e for e in await integrity.chain(conn, sid) if e.block_start == T0 + timedelta(hours=5)]
        assert [(e.kind, e.n_rows) for e in block5] == [("seal", 3), ("supplement", 4)]
        result = await verify_sensor(conn, sid, *WINDOW)
        assert result.status == "OK"
        assert (result.blocks_checked, result.rows_checked) == (25, 72 + 3 + 4 - 3)


async def _sealed(pool: asyncpg.Pool, hours: int = 24) -> int:
    async with pool.acquire() as conn:
        sid = await sensor_id(conn, "GN01")
        await write_hourly(conn, sid, hours)
    await seal_pass(pool, SEAL_ALL)
    return sid


async def _findings(pool: asyncpg.Pool, sid: int) -> list[tuple[str, int | None]]:
    async with pool.acquire() as conn:
        result = await verify_sensor(conn, sid, *WINDOW)
    return [(f.reason, f.seq) for f in result.findings]


async def test_changed_deleted_inserted_and_replaced_rows_are_told_apart(pool: asyncpg.Pool) -> None:
    sid = await _sealed(pool)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE reading SET value = value + 0.001 WHERE sensor_id = $1 AND channel = 'up_mm' AND ts = $2",
            sid,
            T0 + timedelta(hours=3),
        )
        await conn.execute(
            "DELETE FROM reading WHERE sensor_id = $1 AND channel = 'north_mm' AND ts = $2",
            sid,
            T0 + timedelta(hours=7),
        )
        # Backdated reception: claims to have been there when block 11 was sealed.
        await conn.execute(
            "INSERT INTO reading (sensor_id, channel, ts, value, seq, received_at) VALUES ($1, 'east_mm', $2, 1, 1, $3)",
            sid,
            T0 + timedelta(hours=11, minutes=10),
            T0,
        )
        await conn.execute(
            "UPDATE reading SET ts = ts + interval '1 minute' WHERE sensor_id = $1 AND channel = 'east_mm' AND ts = $2",
            sid,
            T0 + timedelta(hours=15),
        )
        # Seals are append-only.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE seal_entry SET n_rows = 0 WHERE sensor_id = $1", sid)
    assert await _findings(pool, sid) == [
        ("row_changed", 4),
        ("row_deleted", 8),
        ("row_inserted", 12),
        ("rows_replaced", 16),
    ]


async def test_rows_slipped_in_without_ingest_are_unsealed_findings_once_stale(pool: asyncpg.Pool) -> None:
    sid = await _sealed(pool)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO reading (sensor_id, channel, ts, value) VALUES ($1, 'east_mm', $2, 1)",
            sid,
            T0 + timedelta(hours=2, minutes=5),
        )
        recent = await verify_sensor(conn, sid, *WINDOW)
        assert (recent.status, recent.pending_rows) == ("OK", 1)
        stale = await verify_sensor(conn, sid, *WINDOW, unsealed_after=timedelta(0))
        assert stale.status == "UNSEALED"
        assert [(f.reason, f.block_start) for f in stale.findings] == [("unsealed", T0 + timedelta(hours=2))]
    # No dirty mark from ingest: the sealer does not cover it.
    assert (await seal_pass(pool, SEAL_ALL)).supplements == 0


async def test_a_supplement_does_not_launder_an_earlier_change(pool: asyncpg.Pool) -> None:
    sid = await _sealed(pool)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE reading SET value = 42 WHERE sensor_id = $1 AND ts = $2", sid, T0 + timedelta(hours=5)
        )
        late = ReadingBatch()
        late.add(sid, "east_mm", us(T0 + timedelta(hours=5, minutes=30)), 5.5, 999)
        await write_batch(conn, late, [])
    assert (await seal_pass(pool, SEAL_ALL)).supplements == 1
    assert await _findings(pool, sid) == [("row_changed", 6)]


async def test_rewritten_or_removed_entries_break_the_chain(pool: asyncpg.Pool) -> None:
    sid = await _sealed(pool)
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE seal_entry DISABLE TRIGGER seal_entry_append_only")
        await conn.execute("UPDATE seal_entry SET n_rows = 2 WHERE sensor_id = $1 AND seq = 10", sid)
    assert await _findings(pool, sid) == [("entry_altered", 10), ("row_inserted", 10)]
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM seal_entry WHERE sensor_id = $1 AND seq = 10", sid)
    assert await _findings(pool, sid) == [("entry_missing", 11)]
    async with pool.acquire() as conn:
        # Re-hashing the rest of the chain hides nothing from a head archived upstream, but
        # even locally a forged entry that is not re-linked shows.
        await conn.execute("UPDATE seal_entry SET seq = 10 WHERE sensor_id = $1 AND seq = 11", sid)
    assert (await _findings(pool, sid))[0] == ("chain_broken", 10)


async def test_concurrent_sealers_append_each_block_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        sids = [await sensor_id(conn, code) for code in ("GN01", "PZ01", "PL01")]
        for sid in sids:
            await write_hourly(conn, sid, 24 * 20, channels=("v",) if sid != sids[0] else ("east_mm", "north_mm"))
    reports = await asyncio.gather(*(seal_pass(pool, SEAL_ALL) for _ in range(4)))
    assert sum(r.seals for r in reports) == 3 * 480
    async with pool.acquire() as conn:
        for sid in sids:
            chain = await integrity.chain(conn, sid)
            assert len(chain) == 480
            assert check_links(chain, sid) is None
            assert len({e.block_start for e in chain}) == 480


async def test_corrections_are_chained_events(pool: asyncpg.Pool) -> None:
    sid = await _sealed(pool)
    async with pool.acquire() as conn:
        c = await integrity.record_correction(
            conn,
            sid,
            channel="up_mm",
            ts_from=T0 + timedelta(hours=2),
            ts_to=T0 + timedelta(hours=4),
            action="invalidate",
            reason="prism knocked by a truck",
            actor="operator-7",
        )
        assert c.seq == 25
        assert (await integrity.head(conn, sid)).kind == "correction"  # type: ignore[union-attr]
        assert await integrity.invalid_ranges(conn, sid) == [
            ("up_mm", T0 + timedelta(hours=2), T0 + timedelta(hours=4))
        ]
        # The readings themselves are untouched and still verify.
        assert (await verify_sensor(conn, sid, *WINDOW)).status == "OK"
        await integrity.record_correction(
            conn,
            sid,
            channel="up_mm",
            ts_from=T0 + timedelta(hours=2),
            ts_to=T0 + timedelta(hours=4),
            action="restore",
            reason="checked against the total station",
            actor="engineer-2",
        )
        assert await integrity.invalid_ranges(conn, sid) == []
        # New readings after a correction keep extending the same chain.
        await write_hourly(conn, sid, 2, start=T0 + timedelta(hours=24))
    assert (await seal_pass(pool, SEAL_ALL)).seals == 2
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE reading_correction DISABLE TRIGGER reading_correction_append_only")
        await conn.execute("UPDATE reading_correction SET reason = 'nothing happened' WHERE seq = 25")
    assert await _findings(pool, sid) == [("correction_altered", 25)]


async def test_a_rehashed_chain_passes_locally_but_not_against_an_archived_head(pool: asyncpg.Pool) -> None:
    """A database owner who rewrites a reading and recomputes every later entry fools a
    local check; the head a higher level archived before does not match any more."""
    sid = await _sealed(pool)
    async with pool.acquire() as conn:
        archived = await integrity.head(conn, sid)
        assert archived is not None
        await conn.execute(
            "UPDATE reading SET value = 0 WHERE sensor_id = $1 AND ts = $2", sid, T0 + timedelta(hours=9)
        )
        await conn.execute("ALTER TABLE seal_entry DISABLE TRIGGER seal_entry_append_only")
        await conn.execute("DELETE FROM seal_entry WHERE sensor_id = $1", sid)
        await conn.execute("UPDATE seal_pending SET min_ts = $2, max_ts = $3 WHERE sensor_id = $1", sid, *WINDOW)
    assert (await seal_pass(pool, SEAL_ALL)).seals == 24
    async with pool.acquire() as conn:
        assert (await verify_sensor(conn, sid, *WINDOW)).status == "OK"
        held = await verify_sensor(conn, sid, *WINDOW, anchors=[(archived.seq, archived.entry_hash)])
        assert [(f.reason, f.seq) for f in held.findings] == [("anchor_mismatch", 24)]
        ahead = await verify_sensor(conn, sid, *WINDOW, anchors=[(30, archived.entry_hash)])
        assert [f.reason for f in ahead.findings] == ["anchor_missing"]


async def test_the_long_running_sealer_follows_ingest_and_stops(pool: asyncpg.Pool) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(integrity.run_sealer(pool, stop, SEAL_ALL), name="sealer")
    async with pool.acquire() as conn:
        sid = await sensor_id(conn, "RG01")
        await write_hourly(conn, sid, 6, channels=("rain_mm",))

    async def sealed() -> bool:
        async with pool.acquire() as conn:
            return len(await integrity.chain(conn, sid)) == 6

    from tests.conftest import wait_for

    await wait_for(sealed, within_s=10)
    stop.set()
    await asyncio.wait_for(task, 5)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT claimed_min FROM seal_pending WHERE sensor_id = $1", sid) is None
