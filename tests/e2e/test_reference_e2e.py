"""End to end over a real broker: a point installed 400 days ago reports over MQTT (its
backlog from installation day arriving last, out of order); ingest stores it, the running
analysis worker measures it from its first reading and raises a red cumulative alert; an
operator's re-baseline through the API reaches the running worker, which judges the point
from the new installation, and the alert history names the re-baseline."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import httpx
import numpy as np
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from core.registry import parse_registry
from core.settings import Settings
from core.wire import readings_topic
from db.pool import open_pool
from db.registry import load_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from tests.conftest import Mosquitto, bearer, issue_token, small_registry_doc, wait_for

DAY_S = 86400.0


def messages(t_s: np.ndarray, east: np.ndarray, per_message: int = 500) -> list[bytes]:
    out = []
    for i in range(0, t_s.size, per_message):
        readings = [
            {"t": int(t * 1000), "v": {"east_mm": round(float(e), 2), "north_mm": 0.0, "up_mm": 0.0}}
            for t, e in zip(t_s[i : i + per_message], east[i : i + per_message], strict=True)
        ]
        out.append(json.dumps({"readings": readings}).encode())
    return out


async def test_a_far_point_alarms_over_mqtt_and_a_rebaseline_reaches_the_running_worker(
    migrated_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    doc = small_registry_doc()
    gnss: dict[str, Any] = doc["mines"][0]["sites"][0]["sensors"][0]  # type: ignore[index]
    gnss["thresholds"] = {"horizontal_mm": {"blue": 300, "yellow": 500, "orange": 700, "red": 900}}
    now = float(int(time.time()))
    first = now - 400 * DAY_S
    # twice a day for a year, then hourly for the last 30 days: 930 mm east since installation
    t = np.concatenate([np.arange(first, now - 30 * DAY_S, DAY_S / 2), np.arange(now - 30 * DAY_S, now - 60, 3600.0)])
    east = 930.0 * (t - first) / (now - first) + np.random.default_rng(2).normal(0.0, 1.0, t.size)
    backlog = t < now - 200 * DAY_S  # the logger's oldest half-year arrives last
    metrics = CollectorRegistry()
    async with open_pool(migrated_dsn, settings) as pool:
        async with pool.acquire() as conn:
            await load_registry(conn, parse_registry(doc))
        ingest = IngestService(settings, pool, mosquitto.target, IngestMetrics(metrics))
        worker = AnalysisWorker(settings, pool, AnalysisMetrics(metrics))
        app = create_app(settings, pool=pool, metrics=metrics)
        operator = bearer(await issue_token(pool, role="operator", scope_kind="mine", scope_code="M1"))
        async with (
            asyncio.TaskGroup() as tg,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=operator) as http,
        ):
            tg.create_task(ingest.run())
            await asyncio.wait_for(ingest.connected.wait(), 10)
            tg.create_task(worker.run())
            try:

                async def cumulative() -> dict[str, Any] | None:
                    items = (await http.get("/api/v1/alerts", params={"rule": "threshold.horizontal_mm"})).json()
                    return items["items"][0] if items["items"] else None

                async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"ref-{uuid.uuid4().hex[:8]}") as c:
                    for body in messages(t[~backlog], east[~backlog]):
                        await c.publish(readings_topic("M1", "GN01"), body, qos=1)
                    # Judged from the first reading that has arrived (200 days back): 465 mm, blue.
                    await wait_for(lambda: _level(cumulative, "blue"), within_s=60, interval=0.3)
                    for body in messages(t[backlog], east[backlog]):
                        await c.publish(readings_topic("M1", "GN01"), body, qos=1)
                # The backlog moves the first reading back to installation day: 930 mm, red.
                await wait_for(lambda: _level(cumulative, "red"), within_s=60, interval=0.3)
                alert = await cumulative()
                assert alert is not None
                assert alert["evidence"]["reference_source"] == "first_reading"
                assert alert["evidence"]["reference_since"] == _iso(first)
                assert 915.0 < alert["evidence"]["value"] < 945.0

                since = datetime.fromtimestamp(now - 3 * DAY_S, tz=UTC)
                r = await http.post(
                    "/api/v1/mines/M1/sensors/GN01/reference",
                    json={"since": since.isoformat(), "reason": "prism reinstalled after blasting"},
                )
                assert r.status_code == 201, r.text

                async def judged_from_new_installation() -> bool:
                    a = await cumulative()
                    return a is not None and a["evidence"].get("reference_source") == "rebaseline"

                await wait_for(judged_from_new_installation, within_s=30, interval=0.3)
                alert = await cumulative()
                assert alert is not None
                assert alert["evidence"]["value"] < 20.0  # three days of creep since the reinstallation
                assert alert["evidence"]["reference_since"] == _iso(since.timestamp())
            finally:
                ingest.stop()
                worker.stop()


async def _level(get: Any, level: str) -> bool:
    alert = await get()
    return alert is not None and alert["level"] == level


def _iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, tz=UTC).isoformat().replace("+00:00", "Z")
