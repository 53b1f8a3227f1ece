"""The GB 39496 roll-up alarms end to end: readings over a real broker → ingest → a real
PostgreSQL → point alerts → a facility alert (rule rollup.facility) on a tailings pond
split over two registry sites, with the 停产撤人 instruction at red and a signed webhook
notification; it clears when the points come down."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from core.model import Level
from core.registry import parse_registry
from core.settings import Settings
from core.wire import readings_topic
from db import notify as notify_store
from db.pool import open_pool
from db.registry import load_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from notify import Notifier
from notify.receiver import WebhookReceiver
from tests.conftest import Mosquitto, bearer, issue_token, small_registry_doc, wait_for

MINE = "TSF9"
EVACUATION = "停产撤人: evacuate Xiaogou village below the dam"
SECRET = "whsec_rollup_test"


def pond_registry() -> dict[str, Any]:
    """The small registry plus a tailings pond whose dam and pond are two sites of one facility."""
    doc = small_registry_doc()
    piezometer = {"depth_m": {"blue": 8, "yellow": 6, "orange": 5.5, "red": 5}}
    doc["mines"].append(  # type: ignore[attr-defined]
        {
            "code": MINE,
            "name": "Xiaogou tailings pond",
            "kind": "tailings_pond",
            "region": "220102",
            "evacuation": EVACUATION,
            "sites": [
                {
                    "code": f"{MINE}-DAM",
                    "name": "Main dam",
                    "kind": "dam",
                    "facility": f"{MINE}-TSF",
                    "sensors": [
                        {"code": "PZ01", "kind": "piezometer", "interval_s": 600, "thresholds": piezometer},
                        {"code": "PZ02", "kind": "piezometer", "interval_s": 600, "thresholds": piezometer},
                    ],
                },
                {
                    "code": f"{MINE}-POND",
                    "name": "Pond",
                    "kind": "pond",
                    "facility": f"{MINE}-TSF",
                    "sensors": [
                        {
                            "code": "PL01",
                            "kind": "pond_level",
                            "interval_s": 600,
                            "thresholds": {"level_m": {"yellow": 1496, "orange": 1497, "red": 1498}},
                        }
                    ],
                },
            ],
        }
    )
    return doc


@pytest.fixture
async def pool(migrated_dsn: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(migrated_dsn, settings) as p, p.acquire() as conn:
        await load_registry(conn, parse_registry(pond_registry()))
        yield p


class Rig:
    """Real ingest on the real broker, and the analysis worker driven cycle by cycle."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, mosquitto: Mosquitto) -> None:
        self.pool = pool
        self.mosquitto = mosquitto
        self.metrics = CollectorRegistry()
        self.ingest = IngestService(settings, pool, mosquitto.target, IngestMetrics(self.metrics))
        self.worker = AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry()))
        self.t_s = time.time() - 6 * 3600  # readings stay in the past (the future is refused)
        self.sent = 0

    async def send(self, values: dict[str, float], *, times: int = 2) -> None:
        """``times`` readings per sensor 10 min apart (depth for piezometers, level for the
        gauge): a single reading off its neighbours is a spike, two are a level."""
        async with aiomqtt.Client("127.0.0.1", self.mosquitto.port, identifier=f"pub-{uuid.uuid4().hex[:8]}") as c:
            for _ in range(times):
                self.t_s += 600
                for code, value in values.items():
                    channel = "level_m" if code.startswith("PL") else "depth_m"
                    body = {"t": int(self.t_s * 1000), "v": {channel: value}}
                    await c.publish(readings_topic(MINE, code), json.dumps(body).encode(), qos=1)
        self.sent += len(values) * times
        await wait_for(
            lambda: (self.metrics.get_sample_value("slopewatch_ingest_readings_stored_total") or 0) >= self.sent
        )
        await self.worker.cycle(now_s=self.t_s + 1)

    async def facility_alert(self) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(
                """SELECT a.*, si.code AS site_code FROM alert a JOIN site si ON si.id = a.site_id
                   WHERE a.rule = 'rollup.facility' AND a.subject = $1 ORDER BY a.id DESC LIMIT 1""",
                f"facility:{MINE}-TSF",
            )

    async def events(self, alert_id: int) -> list[str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT kind FROM alert_event WHERE alert_id = $1 ORDER BY id", alert_id)
        return [r["kind"] for r in rows]

    async def facility_alert_count(self) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM alert WHERE rule = 'rollup.facility'"))


@pytest.fixture
async def rig(pool: asyncpg.Pool, settings: Settings, mosquitto: Mosquitto) -> AsyncIterator[Rig]:
    # No dwell: a point comes down as soon as its reading does (the dwell is tested elsewhere).
    r = Rig(pool, settings.with_(deescalate_dwell_s=0.0), mosquitto)
    task = asyncio.create_task(r.ingest.run())
    await asyncio.wait_for(r.ingest.connected.wait(), 10)
    try:
        yield r
    finally:
        r.ingest.stop()
        await asyncio.wait_for(task, 15)


QUIET = {"PZ01": 9.0, "PZ02": 9.0, "PL01": 1490.0}


async def test_two_orange_points_of_one_item_open_a_red_facility_alert_that_notifies_and_clears(
    rig: Rig, pool: asyncpg.Pool, settings: Settings
) -> None:
    await rig.send(QUIET)
    assert await rig.facility_alert() is None
    await rig.send({**QUIET, "PZ01": 5.3})  # one orange point: its own alert says it all
    assert await rig.facility_alert() is None
    async with WebhookReceiver(secret=SECRET) as hook:
        async with pool.acquire() as conn:
            await notify_store.add_target(
                conn, scope_kind="mine", scope_code=MINE, channel="webhook", address=hook.url, secret=SECRET,
                min_level=Level.BLUE, name="monitoring room",
            )  # fmt: skip
        await rig.send({**QUIET, "PZ01": 5.3, "PZ02": 5.4})  # two orange piezometers: the phreatic line is red
        alert = await rig.facility_alert()
        assert alert is not None
        assert Level(alert["level"]) is Level.RED
        assert alert["sensor_id"] is None
        assert alert["site_code"] == f"{MINE}-DAM"
        evidence = json.loads(alert["evidence"])
        assert evidence["applied"] == "points→item"
        assert evidence["points"] == [f"{MINE}-DAM/PZ01 (phreatic_line)", f"{MINE}-DAM/PZ02 (phreatic_line)"]
        assert evidence["sites"] == [f"{MINE}-DAM", f"{MINE}-POND"]
        assert "2 points at orange or above → red" in alert["explanation_en"]
        assert "2 个测点达到橙色(警戒)及以上 → 红色(警报)" in alert["explanation_zh"]
        notifier = Notifier(settings.with_(notify_timeout_s=2.0), pool)
        assert await notifier.plan() == 3  # the mine step of both point alerts and of the facility alert
        outcomes = await notifier.deliver()
        assert {o.state for o in outcomes} == {"sent"}
        notes = [n for item in hook.received for n in item.json()["notifications"]]
    red = [n for n in notes if n["alert"]["rule"] == "rollup.facility"]
    assert len(red) == 1
    assert red[0]["level"] == "red"
    assert red[0]["evacuation"] == EVACUATION
    assert f"停产撤人 EVACUATE: {EVACUATION}" in red[0]["text"]
    assert red[0]["alert"]["subject"] == f"facility:{MINE}-TSF"
    assert red[0]["alert"]["sensor_code"] is None
    # One point comes down: orange stays (the other point), red no longer holds.
    await rig.send({**QUIET, "PZ01": 5.3})
    alert = await rig.facility_alert()
    assert alert is not None
    assert not alert["active"]
    assert alert["state"] == "open", "a red alert waits for a person to close it"
    assert await rig.events(alert["id"]) == ["opened", "cleared"]
    assert await rig.facility_alert_count() == 1


async def test_orange_items_across_two_sites_of_one_facility_make_it_red(
    rig: Rig, pool: asyncpg.Pool, settings: Settings
) -> None:
    await rig.send({**QUIET, "PZ01": 5.3, "PL01": 1497.2})  # orange phreatic line (dam) + orange pond level (pond)
    app = create_app(settings, pool=pool)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(await issue_token(pool))
    ) as http:
        sites = (await http.get(f"/api/v1/mines/{MINE}/sites")).json()
        listed = (await http.get("/api/v1/alerts", params={"mine": MINE, "rule": "rollup.facility"})).json()["items"]
    # the sites show their facility's level: both red, although each alone holds one orange item
    assert [(s["code"], s["facility"], s["rollup"]["level"]) for s in sites] == [
        (f"{MINE}-DAM", f"{MINE}-TSF", "red"),
        (f"{MINE}-POND", f"{MINE}-TSF", "red"),
    ]
    assert [(a["sensor_code"], a["subject"], a["level"]) for a in listed] == [(None, f"facility:{MINE}-TSF", "red")]
    alert = await rig.facility_alert()
    assert alert is not None
    assert Level(alert["level"]) is Level.RED
    evidence = json.loads(alert["evidence"])
    assert evidence["applied"] == "items→facility (convert)"
    assert evidence["points"] == [f"{MINE}-DAM/PZ01 (phreatic_line)", f"{MINE}-POND/PL01 (pond_level)"]
    assert evidence["reason_en"] == "2 items at orange → red"
    await rig.send(QUIET)
    alert = await rig.facility_alert()
    assert alert is not None
    assert not alert["active"]
    assert await rig.events(alert["id"]) == ["opened", "cleared"]


async def test_each_site_alone_would_stay_orange(rig: Rig, pool: asyncpg.Pool) -> None:
    """Without the facility field the dam and the pond are two facilities: no red."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE site SET facility = NULL")
    await rig.send({**QUIET, "PZ01": 5.3, "PL01": 1497.2})
    assert await rig.facility_alert_count() == 0
