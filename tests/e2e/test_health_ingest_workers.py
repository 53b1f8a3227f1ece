"""health.ingest_workers end to end: real ingest workers in one shared group on a real
mosquitto record heartbeats in PostgreSQL, and the analysis worker's sweep opens a
service alert when fewer or more of them are alive than expected, and clears it when
the count is right again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from core.settings import Settings
from db.pool import open_pool
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from tests.conftest import Mosquitto

HEARTBEAT_S = 0.2


@contextlib.asynccontextmanager
async def worker(pool: asyncpg.Pool, settings: Settings, mosquitto: Mosquitto, client_id: str) -> AsyncIterator[None]:
    service = IngestService(
        settings.with_(mqtt_client_id=client_id), pool, mosquitto.target, IngestMetrics(CollectorRegistry())
    )
    task = asyncio.create_task(service.run(), name=f"ingest-{client_id}")
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        yield
    finally:
        service.stop()
        await asyncio.wait_for(task, 15)


async def sweep(pool: asyncpg.Pool, settings: Settings) -> list[asyncpg.Record]:
    """One analysis cycle (a fresh worker sweeps at once); the service alerts afterwards."""
    await AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry())).cycle(now_s=time.time())
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT * FROM service_alert WHERE rule = 'health.ingest_workers' ORDER BY id")


def evidence(row: asyncpg.Record) -> dict[str, object]:
    value = row["evidence"]
    return json.loads(value) if isinstance(value, str) else dict(value)


async def test_a_worker_missing_from_or_added_to_the_shared_group_raises_a_service_alert_that_clears(
    migrated_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    ids = [f"{group}-ingest-{n}" for n in (1, 2, 3)]
    settings = settings.with_(mqtt_shared_group=group, ingest_heartbeat_s=HEARTBEAT_S, ingest_workers_expected=2)
    silent_after = 3 * HEARTBEAT_S + 0.3
    async with open_pool(migrated_dsn, settings) as pool:
        async with worker(pool, settings, mosquitto, ids[0]), worker(pool, settings, mosquitto, ids[1]):
            await asyncio.sleep(HEARTBEAT_S)
            assert await sweep(pool, settings) == []  # two alive, two expected

            # A third worker joins the group: one more than planned.
            async with worker(pool, settings, mosquitto, ids[2]):
                await asyncio.sleep(HEARTBEAT_S)
                (opened,) = await sweep(pool, settings)
                assert opened["cleared_at"] is None
                assert evidence(opened)["alive"] == 3
                assert evidence(opened)["alive_client_ids"] == ids
                assert "3 ingest workers are alive where 2 are expected" in opened["explanation_en"]
            await asyncio.sleep(silent_after)
            (cleared,) = await sweep(pool, settings)
            assert cleared["id"] == opened["id"]
            assert cleared["cleared_at"] is not None
            assert evidence(cleared)["silent_client_ids"] == [ids[2]]

        # Only worker 1 comes back; worker 2 stays down, and its share waits on the broker.
        async with worker(pool, settings, mosquitto, ids[0]):
            await asyncio.sleep(silent_after)
            rows = await sweep(pool, settings)
            assert len(rows) == 2
            down = rows[-1]
            assert down["cleared_at"] is None
            assert evidence(down)["alive_client_ids"] == [ids[0]]
            assert evidence(down)["silent_client_ids"] == [ids[1], ids[2]]
            assert "Only 1 of 2 ingest workers are alive" in down["explanation_en"]
            assert "只有 1/2 个接入进程在运行" in down["explanation_zh"]
            # It comes back with the same client id: cleared.
            async with worker(pool, settings, mosquitto, ids[1]):
                await asyncio.sleep(HEARTBEAT_S)
                rows = await sweep(pool, settings)
        assert [r["cleared_at"] is not None for r in rows] == [True, True]


async def test_no_expected_count_means_no_check(migrated_dsn: str, settings: Settings, mosquitto: Mosquitto) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    settings = settings.with_(mqtt_shared_group=group, ingest_heartbeat_s=HEARTBEAT_S, ingest_workers_expected=0)
    async with open_pool(migrated_dsn, settings) as pool, worker(pool, settings, mosquitto, f"{group}-ingest-1"):
        await asyncio.sleep(HEARTBEAT_S)
        async with pool.acquire() as conn:
            beats = await conn.fetchval("SELECT count(*) FROM ingest_worker")
        assert await sweep(pool, settings) == []
    assert beats == 1  # the heartbeat is recorded; only the check is off
