"""End to end: a simulated creep-to-failure series over a real broker → ingest → a real
PostgreSQL → the detectors → an alert whose level rises, read through the HTTP API."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from core.model import Level
from core.registry import parse_registry
from core.settings import Settings
from db.pool import open_pool
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from simulators.simulate import build_simulation
from tests.conftest import Mosquitto, bearer, issue_token, small_registry_doc, wait_for


async def test_creep_to_failure_raises_a_red_alert_visible_through_the_api(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    registry = parse_registry(small_registry_doc())
    now = time.time()
    metrics = CollectorRegistry()
    simulation = build_simulation(
        registry,
        mosquitto.target,
        days=20,
        speed=100_000.0,  # 20 days in about 17 s: the worker sees the acceleration grow
        follow_s=0,
        seed=3,
        fail=[("M1", "GN01")],
        fail_in_s=3 * 3600,
        client_id="e2e-sim",
        now_s=now,
    )
    async with open_pool(loaded_dsn, settings) as pool:
        ingest = IngestService(settings, pool, mosquitto.target, IngestMetrics(metrics))
        worker = AnalysisWorker(settings, pool, AnalysisMetrics(metrics))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ingest.run())
            await asyncio.wait_for(ingest.connected.wait(), 10)
            tg.create_task(worker.run())
            stats = await asyncio.wait_for(simulation.run(), 120)
            # Each reading carries several channel values; ingest counts values.
            expected_values = sum(
                int(np.count_nonzero(~np.isnan(v))) for s in simulation.plan.streams for v in s.values.values()
            )

            def stored() -> float:
                return metrics.get_sample_value("slopewatch_ingest_readings_stored_total") or 0.0

            await wait_for(lambda: stored() >= expected_values, within_s=60)
            app = create_app(settings, pool=pool, metrics=metrics)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(await issue_token(pool))
            ) as http:

                async def red_alert() -> bool:
                    items = (await http.get("/api/v1/alerts", params={"mine": "M1", "level": "red"})).json()["items"]
                    return any(a["sensor_code"] == "GN01" for a in items)

                await wait_for(red_alert, within_s=60, interval=0.3)
                ingest.stop()
                worker.stop()
                alerts = (await http.get("/api/v1/alerts", params={"mine": "M1", "state": "open"})).json()["items"]
                red = [a for a in alerts if a["sensor_code"] == "GN01" and a["level"] == "red"]
                accel = next(a for a in red if a["rule"].startswith("displacement.acceleration"))
                events = (await http.get(f"/api/v1/alerts/{accel['id']}/events")).json()
        assert stored() == expected_values
        assert stats.readings == sum(len(s) for s in simulation.plan.streams)
        levels = [Level.parse(e["level"]) for e in events if e["kind"] in ("opened", "escalated")]
        assert levels[-1] is Level.RED
        assert levels == sorted(levels), "escalation only goes up on the way to failure"
        assert len(levels) >= 2, "the alert climbed through lower levels before red"
        assert accel["evidence"], "a red alert carries its evidence"
        assert accel["explanation_en"]
        assert accel["explanation_zh"]
        assert accel["evacuation"].startswith("停产撤人")
        # Red came before the failure time.
        first_red = next(e for e in events if e["level"] == "red")
        assert first_red["at"] < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 3 * 3600))
