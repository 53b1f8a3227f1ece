"""health.ingest_workers end to end: real ingest workers in one shared group on a real
mosquitto record heartbeats in PostgreSQL, and the analysis worker's sweep raises one
alert per mine (subject "ingest", the same alert pipeline as watchdog.analysis: events,
the API, notifications) when fewer or more of them are alive than expected, writes
nothing while that stays so, and clears it when the count is right again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
from prometheus_client import CollectorRegistry

from analytics.ingest_group import RULE
from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from core.model import Level
from core.settings import Settings
from db.pool import open_pool
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from notify import Notifier
from tests.conftest import Mosquitto, bearer, issue_token

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
    """One analysis cycle (a fresh worker sweeps at once); the rule's alerts afterwards."""
    await AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry())).cycle(now_s=time.time())
    async with pool.acquire() as conn:
        return await conn.fetch(
            """SELECT a.*, m.code AS mine FROM alert a JOIN mine m ON m.id = a.mine_id
               WHERE a.rule = $1 ORDER BY a.id""",
            RULE,
        )


async def events(pool: asyncpg.Pool, alert_id: int) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT kind FROM alert_event WHERE alert_id = $1 ORDER BY id", alert_id)
    return [r["kind"] for r in rows]


async def all_events(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM alert_event e JOIN alert a ON a.id = e.alert_id WHERE a.rule = $1", RULE
            )
        )


def evidence(row: asyncpg.Record) -> dict[str, object]:
    value = row["evidence"]
    return json.loads(value) if isinstance(value, str) else dict(value)


async def test_a_worker_missing_from_or_added_to_the_shared_group_raises_one_alert_per_mine_that_clears(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    ids = [f"{group}-ingest-{n}" for n in (1, 2, 3)]
    settings = settings.with_(mqtt_shared_group=group, ingest_heartbeat_s=HEARTBEAT_S, ingest_workers_expected=2)
    silent_after = 3 * HEARTBEAT_S + 0.3
    async with open_pool(loaded_dsn, settings) as pool:
        async with worker(pool, settings, mosquitto, ids[0]), worker(pool, settings, mosquitto, ids[1]):
            await asyncio.sleep(HEARTBEAT_S)
            assert await sweep(pool, settings) == []  # two alive, two expected

            # A third worker joins the group: one more than planned, in every mine.
            async with worker(pool, settings, mosquitto, ids[2]):
                await asyncio.sleep(HEARTBEAT_S)
                opened = await sweep(pool, settings)
                assert [a["mine"] for a in opened] == ["M1", "M1T"], "one alert per mine"
                for a in opened:
                    assert a["active"]
                    assert a["sensor_id"] is None
                    assert a["subject"] == "ingest"
                    assert Level(a["level"]) is Level.BLUE
                    assert evidence(a)["alive"] == 3
                    assert evidence(a)["alive_client_ids"] == ids
                    assert "3 ingest workers are alive where 2 are expected" in a["explanation_en"]
                    assert "有 3 个接入进程在运行，预期 2 个" in a["explanation_zh"]
                # Still three: swept again and again, nothing is written.
                written = await all_events(pool)
                for _ in range(2):
                    again = await sweep(pool, settings)
                    assert [(a["id"], a["updated_at"]) for a in again] == [(a["id"], a["updated_at"]) for a in opened]
                assert await all_events(pool) == written == 2
            await asyncio.sleep(silent_after)
            cleared = await sweep(pool, settings)
            assert [a["id"] for a in cleared] == [a["id"] for a in opened], "cleared, not duplicated"
            assert not any(a["active"] for a in cleared)
            assert [a["state"] for a in cleared] == ["closed", "closed"], "a blue alert closes as it clears"
            assert [await events(pool, a["id"]) for a in cleared] == [["opened", "closed"]] * 2

        # Only worker 1 comes back; worker 2 stays down, and its share waits on the broker.
        async with worker(pool, settings, mosquitto, ids[0]):
            await asyncio.sleep(silent_after)
            rows = await sweep(pool, settings)
            down = rows[2:]
            assert [a["mine"] for a in down] == ["M1", "M1T"]
            for a in down:
                assert a["active"]
                assert a["subject"] == "ingest"
                assert Level(a["level"]) is Level.ORANGE
                assert evidence(a)["alive_client_ids"] == [ids[0]]
                assert evidence(a)["silent_client_ids"] == [ids[1], ids[2]]
                assert "Only 1 of 2 ingest workers are alive" in a["explanation_en"]
                assert "只有 1/2 个接入进程在运行" in a["explanation_zh"]

            # Each mine's room and regulators see it: the API lists the mine's own alert ...
            app = create_app(settings, pool=pool, metrics=CollectorRegistry())
            token = await issue_token(pool, role="viewer", scope_kind="mine", scope_code="M1")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
                page = await http.get("/api/v1/alerts", params={"rule": RULE}, headers=bearer(token))
                assert page.status_code == 200, page.text
                listed = page.json()["items"]
                assert {a["mine_code"] for a in listed} == {"M1"}, "a mine's token sees its own mine only"
                (now_open,) = [a for a in listed if a["active"]]
                assert now_open["id"] == down[0]["id"]
                assert now_open["subject"] == "ingest"
                assert now_open["sensor_code"] is None
                assert now_open["level"] == "orange"
                one = await http.get(f"/api/v1/alerts/{down[1]['id']}", headers=bearer(token))
                assert one.status_code in (403, 404), "not M1T's alert"
            # ... and the notifier takes each mine's first step, as for any orange alert.
            assert await Notifier(settings, pool).plan() == 2
            async with pool.acquire() as conn:
                steps = await conn.fetch(
                    "SELECT alert_id, tier FROM notify_step WHERE alert_id = ANY($1::bigint[]) ORDER BY alert_id",
                    [a["id"] for a in down],
                )
            assert [(r["alert_id"], r["tier"]) for r in steps] == [(a["id"], "mine") for a in down]

            # It comes back with the same client id: cleared.
            async with worker(pool, settings, mosquitto, ids[1]):
                await asyncio.sleep(HEARTBEAT_S)
                rows = await sweep(pool, settings)
        assert len(rows) == 4
        assert not any(a["active"] for a in rows)
        assert [a["state"] for a in rows[2:]] == ["open", "open"], "an orange alert waits for a person to close it"
        assert [await events(pool, a["id"]) for a in rows[2:]] == [["opened", "cleared"]] * 2
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT to_regclass('service_alert')") is None


async def test_no_expected_count_means_no_check(loaded_dsn: str, settings: Settings, mosquitto: Mosquitto) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    settings = settings.with_(mqtt_shared_group=group, ingest_heartbeat_s=HEARTBEAT_S, ingest_workers_expected=0)
    async with open_pool(loaded_dsn, settings) as pool, worker(pool, settings, mosquitto, f"{group}-ingest-1"):
        await asyncio.sleep(HEARTBEAT_S)
        async with pool.acquire() as conn:
            beats = await conn.fetchval("SELECT count(*) FROM ingest_worker")
        assert await sweep(pool, settings) == []
    assert beats == 1  # the heartbeat is recorded; only the check is off
