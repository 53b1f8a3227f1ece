"""health.clock end to end: a logger whose clock runs ahead sends readings over a real
broker, ingest refuses them (dead letters), and the analysis worker raises an alert
saying why, then clears it once the refusals stop."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiomqtt
from prometheus_client import CollectorRegistry

from analytics.worker import CLOCK_WINDOW_S, AnalysisMetrics, AnalysisWorker
from core.settings import Settings
from core.wire import readings_topic
from db.pool import open_pool
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from tests.conftest import Mosquitto, wait_for


async def test_readings_from_the_future_raise_a_clock_alert_that_clears_when_they_stop(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    metrics = CollectorRegistry()
    now = time.time()
    ahead_ms = int((now + 2 * 3600) * 1000)  # two hours ahead: far past max_future_s
    good_ms = int(now * 1000)
    payload = {
        "readings": [
            {"t": ahead_ms, "v": {"east_mm": 1.0, "north_mm": 0.5, "up_mm": -1.0}},
            {"t": ahead_ms + 60_000, "v": {"east_mm": 1.1, "north_mm": 0.5, "up_mm": -1.0}},
        ]
    }
    async with open_pool(loaded_dsn, settings) as pool:
        ingest = IngestService(settings, pool, mosquitto.target, IngestMetrics(metrics))
        task = asyncio.create_task(ingest.run())
        try:
            await asyncio.wait_for(ingest.connected.wait(), 10)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"pub-{uuid.uuid4().hex[:8]}") as c:
                await c.publish(readings_topic("M1", "GN01"), json.dumps(payload).encode(), qos=1)
                good = {"t": good_ms, "v": {"east_mm": 0.0, "north_mm": 0.0, "up_mm": 0.0}}
                await c.publish(readings_topic("M1", "GN01"), json.dumps(good).encode(), qos=1)

            async def refused() -> int:
                async with pool.acquire() as conn:
                    return int(
                        await conn.fetchval("SELECT count(*) FROM dead_letter WHERE reason = 'future_timestamp'")
                    )

            for _ in range(100):
                if await refused() == 1:
                    break
                await asyncio.sleep(0.1)
            assert await refused() == 1
            await wait_for(lambda: (metrics.get_sample_value("slopewatch_ingest_readings_stored_total") or 0.0) >= 3)
        finally:
            ingest.stop()
            await asyncio.wait_for(task, 15)

        worker = AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry()))
        await worker.cycle(now_s=time.time())
        async with pool.acquire() as conn:
            alerts = await conn.fetch(
                """SELECT m.code AS mine, s.code, a.level, a.state, a.evidence, a.explanation_en, a.explanation_zh
                   FROM alert a JOIN sensor s ON s.id = a.sensor_id JOIN mine m ON m.id = a.mine_id
                   WHERE a.rule = 'health.clock'"""
            )
        assert len(alerts) == 1
        (alert,) = alerts
        assert (alert["mine"], alert["code"]) == ("M1", "GN01")
        assert alert["level"] == 1  # blue
        assert alert["state"] == "open"
        evidence = json.loads(alert["evidence"]) if isinstance(alert["evidence"], str) else alert["evidence"]
        assert evidence["readings_refused"] == 2
        assert evidence["max_future_s"] == settings.max_future_s
        assert "beyond the allowed clock skew" in evidence["example"]
        assert "clock runs ahead" in alert["explanation_en"]
        assert "时钟超前" in alert["explanation_zh"]

        # No refusal for longer than the window, then past the de-escalation dwell: cleared
        # and, as a blue alert, closed by itself.
        later = time.time() + CLOCK_WINDOW_S + 60
        await AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry())).cycle(now_s=later)
        await AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry())).cycle(
            now_s=later + settings.deescalate_dwell_s + 60
        )
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT state, active FROM alert WHERE rule = 'health.clock'")
        assert row is not None
        assert row["active"] is False
        assert row["state"] == "closed"
