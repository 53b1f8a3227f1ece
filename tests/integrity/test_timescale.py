"""Sealing and verification on the real TimescaleDB engine: a hypertable with compressed chunks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest

from core.registry import parse_registry
from core.settings import Settings
from db.integrity import seal_pass, verify_sensor
from db.migrate import Flavour, migrate
from db.pool import open_pool
from db.registry import load_registry
from tests.conftest import small_registry_doc
from tests.integrity.support import SEAL_ALL, T0, sensor_id, write_hourly
from tests.support.timescale import start_timescale

pytestmark = pytest.mark.timescale


@pytest.fixture
def timescale_dsn() -> Iterator[str]:
    with start_timescale() as dsn:
        yield dsn


async def test_seal_and_verify_a_compressed_hypertable(timescale_dsn: str, settings: Settings) -> None:
    # One connection at a time (see devtools/timescaledb/README.md): a pool of one.
    settings = settings.with_(db_pool_max=1, db_statement_cache_size=0, db_search_path="public")
    conn = await asyncpg.connect(timescale_dsn, statement_cache_size=0)
    try:
        assert (await migrate(conn, timescaledb="auto")).flavour is Flavour.TIMESCALE
        await load_registry(conn, parse_registry(small_registry_doc()))
        sid = await sensor_id(conn, "GN01")
        assert await write_hourly(conn, sid, 24 * 20) == 1440
    finally:
        await conn.close()
    async with open_pool(timescale_dsn, settings) as pool:
        report = await seal_pass(pool, SEAL_ALL)
        assert (report.seals, report.rows) == (480, 1440)
        async with pool.acquire() as c:
            compressed = await c.fetch(
                "SELECT compress_chunk(c) FROM show_chunks('reading', older_than => $1::timestamptz) c",
                T0 + timedelta(days=14),
            )
            assert compressed
            window = (T0, T0 + timedelta(days=20))
            ok = await verify_sensor(c, sid, *window)
            assert (ok.status, ok.blocks_checked, ok.rows_checked) == ("OK", 480, 1440)
            # Tampering inside a compressed chunk and in an uncompressed one.
            await c.execute(
                "UPDATE reading SET value = -1 WHERE sensor_id = $1 AND channel = 'east_mm' AND ts = $2",
                sid,
                T0 + timedelta(days=2, hours=3),
            )
            await c.execute("DELETE FROM reading WHERE sensor_id = $1 AND ts = $2", sid, T0 + timedelta(days=18))
            bad = await verify_sensor(c, sid, *window)
            assert [(f.reason, f.seq) for f in bad.findings] == [("row_changed", 52), ("row_deleted", 433)]
        assert (await seal_pass(pool, SEAL_ALL)).seals == 0
