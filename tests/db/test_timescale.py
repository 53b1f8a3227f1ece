"""The same schema, writes and queries on a real TimescaleDB engine (PGlite + TimescaleDB 2.23)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api.app import create_app
from core.registry import parse_registry
from core.settings import Settings
from db.migrate import Flavour, apply_policies, migrate
from db.pool import open_pool
from db.readings import ReadingBatch, write_batch
from db.registry import load_registry
from tests.conftest import bearer, issue_token, small_registry_doc
from tests.support.timescale import start_timescale

pytestmark = pytest.mark.timescale
T0 = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def timescale_dsn() -> Iterator[str]:
    with start_timescale() as dsn:
        yield dsn


async def test_hypertable_compression_aggregates_and_api(timescale_dsn: str, settings: Settings) -> None:
    # The engine has one shared session and one connection at a time, and asyncpg's
    # RESET ALL on release sets its search_path to PGlite's boot value (pg_catalog).
    settings = settings.with_(db_pool_max=1, db_statement_cache_size=0, db_search_path="public")
    conn = await asyncpg.connect(timescale_dsn, statement_cache_size=0)
    try:
        report = await migrate(conn, timescaledb="auto")
        assert report.flavour is Flavour.TIMESCALE
        assert report.timescaledb_version
        assert (await migrate(conn, timescaledb="auto")).applied == ()
        await apply_policies(conn, compress_after_days=7, retention_days=3650)
        await load_registry(conn, parse_registry(small_registry_doc()))
        sid = await conn.fetchval("SELECT id FROM sensor WHERE code = 'PZ01'")
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'reading'"
            )
            == 1
        )
        jobs = {r["proc_name"] for r in await conn.fetch("SELECT proc_name FROM timescaledb_information.jobs")}
        assert {"policy_compression", "policy_retention", "policy_refresh_continuous_aggregate"} <= jobs
        batch = ReadingBatch()
        for h in range(24 * 20):  # 20 days, hourly
            batch.add(sid, "depth_m", int((T0 + timedelta(hours=h)).timestamp() * 1e6), 10.0 - h / 100, h)
        assert await write_batch(conn, batch, []) == 480
        await conn.execute("CALL refresh_continuous_aggregate('reading_hourly', NULL, NULL)")
        await conn.execute("CALL refresh_continuous_aggregate('reading_daily', NULL, NULL)")
        compressed = await conn.fetch(
            "SELECT compress_chunk(c) FROM show_chunks('reading', older_than => $1::timestamptz) c",
            T0 + timedelta(days=14),
        )
        assert compressed, "at least one chunk is old enough to compress"
        # A redelivery into a compressed chunk is still a harmless duplicate.
        assert await write_batch(conn, batch, []) == 0
        assert await conn.fetchval("SELECT count(*) FROM reading") == 480
    finally:
        await conn.close()
    async with open_pool(timescale_dsn, settings) as pool:
        app = create_app(settings, pool=pool)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(await issue_token(pool))
        ) as http:
            params = {"start": T0.isoformat(), "end": (T0 + timedelta(days=20)).isoformat()}
            daily = (
                await http.get("/api/v1/mines/M1T/sensors/PZ01/readings", params={**params, "bucket": "1d"})
            ).json()
            assert [b["n"] for b in daily["buckets"]] == [24] * 20
            assert daily["buckets"][0]["max"] == 10.0
            six = (await http.get("/api/v1/mines/M1T/sensors/PZ01/readings", params={**params, "bucket": "6h"})).json()
            assert len(six["buckets"]) == 80
            raw = (await http.get("/api/v1/mines/M1T/sensors/PZ01/readings", params=params)).json()
            assert len(raw["raw"]) == 480
            assert raw["raw"][0]["value"] == 10.0
