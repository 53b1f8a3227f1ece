"""Corrections reach everything, on a real PostgreSQL with the real worker and API: an
invalidated spike no longer holds its alert (the history names the correction), restoring it
brings the alert back, and the readings API hides invalid readings unless asked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from core.registry import parse_registry
from core.settings import Settings
from db.pool import open_pool
from db.readings import ReadingBatch, write_batch
from db.registry import load_registry
from tests.conftest import bearer, issue_token, small_registry_doc

RAIN_1H = {"blue": 10.0, "yellow": 20.0, "orange": 30.0, "red": 50.0}
BASE = "/api/v1/mines/M1/sensors/RG01"


@dataclass
class Env:
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    operator: dict[str, str]
    sid: int
    now: float
    spike: datetime

    async def cycle(self) -> None:
        await AnalysisWorker(Settings(), self.pool, AnalysisMetrics(CollectorRegistry())).cycle(now_s=self.now)

    async def alert(self, rule: str) -> dict[str, Any]:
        items = (await self.http.get("/api/v1/alerts", params={"mine": "M1", "rule": rule})).json()["items"]
        assert len(items) == 1, items
        return dict(items[0])

    async def events(self, alert_id: int) -> list[dict[str, Any]]:
        return list((await self.http.get(f"/api/v1/alerts/{alert_id}/events")).json())

    async def correct(self, action: str) -> dict[str, Any]:
        body = {
            "channel": "rain_mm",
            "start": self.spike.isoformat(),
            "end": self.spike.isoformat(),
            "action": action,
            "reason": "bucket knocked during maintenance visit",
        }
        r = await self.http.post(f"{BASE}/corrections", headers=self.operator, json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())


@pytest.fixture
async def env(migrated_dsn: str, settings: Settings) -> AsyncIterator[Env]:
    doc = small_registry_doc()
    rain = doc["mines"][0]["sites"][0]["sensors"][1]  # type: ignore[index]
    rain["thresholds"] = {"rain_1h_mm": RAIN_1H}
    conn = await asyncpg.connect(migrated_dsn)
    try:
        await load_registry(conn, parse_registry(doc))
        sid = await conn.fetchval("SELECT id FROM sensor WHERE code = 'RG01'")
    finally:
        await conn.close()
    now = float(int(time.time()) // 600 * 600)
    # Two dry days every 10 minutes, and one tip-bucket spike of 80 mm half an hour ago.
    t = np.arange(now - 2 * 86400.0, now + 1.0, 600.0)
    spike_i = t.size - 4
    batch = ReadingBatch()
    for i, ts in enumerate(t):
        batch.add(sid, "rain_mm", int(ts) * 1_000_000, 80.0 if i == spike_i else 0.0, i)
    async with open_pool(migrated_dsn, settings) as pool:
        async with pool.acquire() as conn:
            await write_batch(conn, batch, [])
        app = create_app(settings.with_(summary_refresh_s=0), pool=pool)
        admin = bearer(await issue_token(pool))
        operator = bearer(await issue_token(pool, role="operator", scope_kind="mine", scope_code="M1"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=admin
        ) as http:
            yield Env(pool, http, operator, sid, now, datetime.fromtimestamp(t[spike_i], tz=UTC))


async def test_an_invalidated_spike_no_longer_holds_its_alert_and_restoring_it_brings_it_back(env: Env) -> None:
    await env.cycle()
    red = await env.alert("threshold.rain_1h_mm")
    yellow = await env.alert("threshold.rain_24h_mm")
    assert (red["level"], red["active"]) == ("red", True)
    assert (yellow["level"], yellow["active"]) == ("yellow", True)

    inv = await env.correct("invalidate")
    await env.cycle()
    # The red alert comes down at once (no dwell: the reading was wrong); having been red it
    # stays open for a person to close, inactive. The yellow one closes by itself.
    red_after = await env.alert("threshold.rain_1h_mm")
    assert (red_after["active"], red_after["state"]) == (False, "open")
    assert (await env.alert("threshold.rain_24h_mm"))["state"] == "closed"
    for alert_id, kind in ((red["id"], "cleared"), (yellow["id"], "closed")):
        last = (await env.events(alert_id))[-1]
        assert last["kind"] == kind
        assert last["retroactive"] is True
        assert f"correction {inv['id']} (chain entry {inv['seq']})" in last["note"]
        assert "invalidated rain_mm" in last["note"]
        assert "bucket knocked" in last["note"]
        assert [(c["kind"], c["id"], c["action"]) for c in last["details"]["causes"]] == [
            ("correction", inv["id"], "invalidate")
        ]

    restore = await env.correct("restore")
    await env.cycle()
    back = await env.alert("threshold.rain_1h_mm")
    assert (back["id"], back["level"], back["active"]) == (red["id"], "red", True)
    last = (await env.events(red["id"]))[-1]
    assert last["kind"] == "reactivated"
    assert f"correction {restore['id']} (chain entry {restore['seq']})" in last["note"]
    assert "restored" in last["note"]


async def test_the_readings_api_leaves_invalid_readings_out_unless_asked_and_flags_them(env: Env) -> None:
    window = {
        "start": (env.spike - timedelta(hours=2)).isoformat(),
        "end": (env.spike + timedelta(hours=1)).isoformat(),
    }
    before = (await env.http.get(f"{BASE}/readings", params=window)).json()["raw"]
    assert [r["value"] for r in before].count(80.0) == 1
    assert not any(r["invalid"] for r in before)
    await env.correct("invalidate")

    raw = (await env.http.get(f"{BASE}/readings", params=window)).json()["raw"]
    assert len(raw) == len(before) - 1
    assert 80.0 not in [r["value"] for r in raw]
    flagged = (await env.http.get(f"{BASE}/readings", params={**window, "include_invalid": "true"})).json()["raw"]
    assert [(r["value"], r["invalid"]) for r in flagged if r["invalid"]] == [(80.0, True)]
    assert len(flagged) == len(before)

    for bucket in ("1h", "15m"):
        kept = (await env.http.get(f"{BASE}/readings", params={**window, "bucket": bucket})).json()["buckets"]
        assert max(b["max"] for b in kept) == 0.0
        assert sum(b["n_invalid"] for b in kept) == 0
        every = (
            await env.http.get(f"{BASE}/readings", params={**window, "bucket": bucket, "include_invalid": "true"})
        ).json()["buckets"]
        assert max(b["max"] for b in every) == 80.0
        assert sum(b["n_invalid"] for b in every) == 1
        assert sum(b["n"] for b in every) == sum(b["n"] for b in kept) + 1

    # Restored, the reading is back everywhere, unflagged.
    await env.correct("restore")
    again = (await env.http.get(f"{BASE}/readings", params=window)).json()["raw"]
    assert [(r["value"], r["invalid"]) for r in again] == [(r["value"], r["invalid"]) for r in before]
