"""End to end: the shipped example replayed at once (``slopewatch replay … --shift-to-now
--speed inf``) into a freshly started service ends with a red acceleration alert on its
failing point, and its rate alert red too: the level judged from scratch is the level an
hour-by-hour run reaches (tests/analytics/test_fresh_judgement.py)."""

from __future__ import annotations

import asyncio
import math
import time

import asyncpg
import httpx
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from core.registry import parse_registry
from core.settings import Settings
from db.pool import open_pool
from db.registry import load_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from simulators.publisher import Publisher
from simulators.replay import example_csv, read_replay_csv, shift_to_end_at
from tests.conftest import Mosquitto, bearer, issue_token, small_registry_doc, wait_for

#: The example's red rate value for the failing point, as a design institute sets it
#: (the issue's figure): 34 mm/day measured in the last day.
EXAMPLE_RATE = {"blue": 5, "yellow": 10, "orange": 15, "red": 20}


def _example_registry() -> dict[str, object]:
    doc = small_registry_doc()
    mines = doc["mines"]
    assert isinstance(mines, list)
    mines.append(
        {
            "code": "EXAMPLE-PIT",
            "name": "Example pit",
            "kind": "open_pit",
            "region": "220102",
            "sites": [
                {
                    "code": "EXAMPLE-PIT-N",
                    "name": "North wall",
                    "kind": "slope",
                    "height_m": 220,
                    "sensors": [
                        {
                            "code": "GNSS-03",
                            "kind": "gnss",
                            "interval_s": 3600,
                            "thresholds": {"horizontal_mm_per_day": EXAMPLE_RATE},
                        },
                        {"code": "CRK-01", "kind": "crack", "interval_s": 3600},
                    ],
                }
            ],
        }
    )
    return doc


async def test_the_example_replayed_at_once_ends_red_on_its_failing_point(
    migrated_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    conn = await asyncpg.connect(migrated_dsn)
    try:
        await load_registry(conn, parse_registry(_example_registry()))
    finally:
        await conn.close()
    streams, _ = shift_to_end_at(read_replay_csv(example_csv()), time.time())
    publisher = Publisher(streams, mosquitto.target, speed=math.inf, client_id="e2e-replay")
    metrics = CollectorRegistry()
    async with open_pool(migrated_dsn, settings) as pool:
        ingest = IngestService(settings, pool, mosquitto.target, IngestMetrics(metrics))
        worker = AnalysisWorker(settings, pool, AnalysisMetrics(metrics))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ingest.run())
            await asyncio.wait_for(ingest.connected.wait(), 10)
            tg.create_task(worker.run())
            stats = await asyncio.wait_for(publisher.run(), 60)
            app = create_app(settings, pool=pool, metrics=metrics)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(await issue_token(pool))
            ) as http:

                async def open_alerts() -> list[dict[str, object]]:
                    r = await http.get("/api/v1/alerts", params={"mine": "EXAMPLE-PIT", "state": "open"})
                    items = r.json()["items"]
                    assert isinstance(items, list)
                    return items

                def level(items: list[dict[str, object]], sensor: str, rule: str) -> str | None:
                    return next(
                        (str(a["level"]) for a in items if a["sensor_code"] == sensor and a["rule"] == rule), None
                    )

                accel, rate = "displacement.acceleration.horizontal", "threshold.horizontal_mm_per_day"

                async def both_red() -> bool:
                    items = await open_alerts()
                    return level(items, "GNSS-03", accel) == "red" and level(items, "GNSS-03", rate) == "red"

                await wait_for(both_red, within_s=90, interval=0.5)
                ingest.stop()
                worker.stop()
                alerts = await open_alerts()
    assert stats.readings == sum(len(s) for s in streams)
    gnss = [a for a in alerts if a["sensor_code"] == "GNSS-03" and a["rule"] == accel]
    assert len(gnss) == 1  # one open alert per sensor and rule, escalated, not duplicated
    assert gnss[0]["forecast_failure_at"] is not None
    # the creeping crack meter beside it raises nothing red
    assert not [a for a in alerts if a["sensor_code"] == "CRK-01" and a["level"] == "red"]
