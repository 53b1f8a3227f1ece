"""health.seq end to end: devices number their readings (seq); readings lost on the way
leave holes that the analysis worker turns into a health alert, over a real mosquitto,
ingest and PostgreSQL. The loss the broker cannot be made to prevent is the point: a rogue
member of ingest's shared group takes its turn and ingest never sees those readings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import asyncpg
from prometheus_client import CollectorRegistry

from analytics.worker import SEQ_GRACE_S, SEQ_WINDOW_S, AnalysisMetrics, AnalysisWorker
from core.settings import Settings
from core.wire import READINGS_FILTER, readings_topic
from db.pool import open_pool
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from tests.conftest import Mosquitto, wait_for

GNSS = {"east_mm": 1.0, "north_mm": 0.5, "up_mm": -1.0}


def reading(t_s: float, seq: int, values: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"t": int(t_s * 1000), "v": values or GNSS, "seq": seq}


@contextlib.asynccontextmanager
async def ingest_running(
    pool: asyncpg.Pool, settings: Settings, mosquitto: Mosquitto
) -> AsyncIterator[CollectorRegistry]:
    metrics = CollectorRegistry()
    ingest = IngestService(settings, pool, mosquitto.target, IngestMetrics(metrics))
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.wait_for(ingest.connected.wait(), 10)
        yield metrics
    finally:
        ingest.stop()
        await asyncio.wait_for(task, 15)


def stored(metrics: CollectorRegistry) -> float:
    return metrics.get_sample_value("slopewatch_ingest_readings_stored_total") or 0.0


async def seq_alerts(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT s.code, a.level, a.state, a.active, a.evidence, a.explanation_en, a.explanation_zh
               FROM alert a JOIN sensor s ON s.id = a.sensor_id WHERE a.rule = 'health.seq'"""
        )
    return {r["code"]: r for r in rows}


def evidence(row: asyncpg.Record) -> dict[str, Any]:
    ev = row["evidence"]
    return dict(json.loads(ev) if isinstance(ev, str) else ev)


async def cycle(settings: Settings, pool: asyncpg.Pool, now_s: float) -> None:
    """A fresh worker sweeps at once (a running one sweeps once a minute)."""
    await AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry())).cycle(now_s=now_s)


async def test_holes_in_seq_raise_a_health_alert_that_clears_when_late_readings_fill_them(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    t0 = time.time() - 3 * 3600
    lost = {7, 8, 15}
    # GN01: seq 0..19 minus three lost readings (holes 6..9 and 14..16), then the device
    # restarts and counts from 0 again: a restart is not a loss.
    gnss = [reading(t0 + 60 * n, n) for n in range(20) if n not in lost]
    gnss += [reading(t0 + 60 * (20 + n), n) for n in range(3)]
    # RG01: seq 0..5, seq 3 refused by ingest (not a number): a hole with a dead letter.
    rain = [reading(t0 + 60 * n, n, {"rain_mm": "x" if n == 3 else 0.5}) for n in range(6)]
    # PZ01 (another mine): complete, delivered in two messages in reverse order.
    pz = [reading(t0 + 60 * n, n, {"depth_m": 9.0}) for n in range(10)]
    async with open_pool(loaded_dsn, settings) as pool:
        async with ingest_running(pool, settings, mosquitto) as metrics:
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"gw-{uuid.uuid4().hex[:8]}") as gw:
                for topic, readings in (
                    (readings_topic("M1", "GN01"), gnss),
                    (readings_topic("M1", "RG01"), rain),
                    (readings_topic("M1T", "PZ01"), pz[5:]),
                    (readings_topic("M1T", "PZ01"), pz[:5]),
                ):
                    await gw.publish(topic, json.dumps({"readings": readings}).encode(), qos=1)
            await wait_for(lambda: stored(metrics) >= 3 * 20 + 5 + 10)

        # Just stored: a late reading may still fill a hole, so nothing yet.
        now = time.time()
        await cycle(settings, pool, now)
        assert await seq_alerts(pool) == {}

        settled = now + SEQ_GRACE_S + 1
        await cycle(settings, pool, settled)
        alerts = await seq_alerts(pool)
        assert set(alerts) == {"GN01", "RG01"}
        gn, rg = evidence(alerts["GN01"]), evidence(alerts["RG01"])
        assert (gn["gaps"], gn["readings_missing"], gn["readings_refused_by_ingest"]) == (2, 3, 0)
        assert gn["holes"] == ["14..16", "6..9"]
        assert (rg["gaps"], rg["readings_missing"], rg["readings_refused_by_ingest"]) == (1, 1, 1)
        assert all(a["level"] == 1 and a["state"] == "open" and a["active"] for a in alerts.values())
        assert "between the device and ingest" in alerts["GN01"]["explanation_en"]
        assert "dead letters" in alerts["RG01"]["explanation_en"]
        assert "共缺 3 个读数" in alerts["GN01"]["explanation_zh"]

        # The gateway resends the three lost readings (断电续传): the holes are filled, the
        # alert comes down after the de-escalation dwell and, being blue, closes by itself.
        async with ingest_running(pool, settings, mosquitto) as metrics:
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"gw-{uuid.uuid4().hex[:8]}") as gw:
                late = [reading(t0 + 60 * n, n) for n in sorted(lost)]
                await gw.publish(readings_topic("M1", "GN01"), json.dumps({"readings": late}).encode(), qos=1)
            await wait_for(lambda: stored(metrics) >= 3 * 3)
        await cycle(settings, pool, settled + 60)
        await cycle(settings, pool, settled + 60 + settings.deescalate_dwell_s + 60)
        alerts = await seq_alerts(pool)
        assert (alerts["GN01"]["active"], alerts["GN01"]["state"]) == (False, "closed")
        # RG01's reading was refused for good: its hole stays while it lies in the window...
        assert (alerts["RG01"]["active"], alerts["RG01"]["state"]) == (True, "open")
        # ...and the alert clears once a window has passed without a new hole.
        after_window = t0 + SEQ_WINDOW_S + 3600
        await cycle(settings, pool, after_window)
        await cycle(settings, pool, after_window + settings.deescalate_dwell_s + 60)
        alerts = await seq_alerts(pool)
        assert (alerts["RG01"]["active"], alerts["RG01"]["state"]) == (False, "closed")


async def test_a_rogue_member_of_the_shared_group_shows_as_holes_in_seq(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    """Issue 13's attack on a broker that does not refuse it (the test broker checks no
    subscription, as the old acl_file did not): a client joins ingest's shared group, the
    broker deals it every other reading. Ingest sees nothing wrong; the holes in seq are
    exactly the readings the rogue took."""
    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = settings.with_(mqtt_shared_group=group)
    t0 = time.time() - 2 * 3600
    topic = readings_topic("M1", "GN01")
    taken: list[int] = []
    async with open_pool(loaded_dsn, settings) as pool:
        gw_id, rogue_id = f"gw-{uuid.uuid4().hex[:8]}", f"rogue-{uuid.uuid4().hex[:8]}"
        async with (
            ingest_running(pool, settings, mosquitto) as metrics,
            aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=gw_id) as gw,
        ):
            await gw.publish(topic, json.dumps(reading(t0, 0)).encode(), qos=1)
            await wait_for(lambda: stored(metrics) >= 3)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=rogue_id) as rogue:
                await rogue.subscribe(f"$share/{group}/{READINGS_FILTER}", qos=1)

                async def take() -> None:
                    async for message in rogue.messages:
                        taken.append(json.loads(bytes(message.payload))["seq"])

                thief = asyncio.create_task(take())
                for n in range(1, 21):
                    await gw.publish(topic, json.dumps(reading(t0 + 60 * n, n)).encode(), qos=1)
                await wait_for(lambda: len(taken) + stored(metrics) / 3 >= 21)
                thief.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await thief
            # The rogue has gone (clean session): the next reading reaches ingest, and closes
            # the last hole.
            await gw.publish(topic, json.dumps(reading(t0 + 60 * 21, 21)).encode(), qos=1)
            await wait_for(lambda: len(taken) + stored(metrics) / 3 >= 22)
        assert 5 <= len(taken) <= 15  # dealt in turn: about half
        await cycle(settings, pool, time.time() + SEQ_GRACE_S + 1)
        alerts = await seq_alerts(pool)
    assert set(alerts) == {"GN01"}
    ev = evidence(alerts["GN01"])
    assert ev["readings_missing"] == len(taken)
    assert ev["readings_refused_by_ingest"] == 0


async def test_readings_held_up_by_a_stopped_worker_show_until_delivered_and_nothing_else_does(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    """No false holes: two workers in one shared group, messages duplicated and reordered.
    One worker stops mid-stream; the broker keeps dealing it its turn, held in its session.
    Held past the grace, those readings are missing from the database and health.seq says
    so; when the worker returns they are stored, every reading exactly once, and the alerts
    come down."""
    group, tag = f"g-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    first = settings.with_(mqtt_shared_group=group, mqtt_client_id=f"w1-{tag}")
    second = settings.with_(mqtt_shared_group=group, mqtt_client_id=f"w2-{tag}")
    streams = {
        ("M1", "GN01"): GNSS,
        ("M1", "RG01"): {"rain_mm": 0.5},
        ("M1T", "PZ01"): {"depth_m": 9.0},
        ("M1T", "PL01"): {"level_m": 1490.0},
    }
    values = sum(len(v) for v in streams.values()) * 60  # 60 readings per sensor
    t0 = time.time() - 2 * 3600
    sent: list[tuple[str, bytes]] = []
    for n in range(60):
        for (mine, sensor), v in streams.items():
            sent.append((readings_topic(mine, sensor), json.dumps(reading(t0 + 60 * n, n, v)).encode()))
    # Swap every fifth message with its successor; send every seventh twice.
    for i in range(0, len(sent) - 1, 5):
        sent[i], sent[i + 1] = sent[i + 1], sent[i]
    sent = [m for i, m in enumerate(sent) for _ in range(2 if i % 7 == 0 else 1)]
    half = len(sent) // 2
    registries: list[CollectorRegistry] = []

    def total() -> float:
        return sum(stored(r) for r in registries)

    async with open_pool(loaded_dsn, settings) as pool, contextlib.AsyncExitStack() as stack:
        registries.append(await stack.enter_async_context(ingest_running(pool, first, mosquitto)))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"gw-{tag}") as gw:
            async with ingest_running(pool, second, mosquitto) as metrics:
                registries.append(metrics)
                for topic, body in sent[:half]:
                    await gw.publish(topic, body, qos=1)
                await asyncio.sleep(1.0)
            # The second worker is away; its persistent session still takes its turn.
            for topic, body in sent[half:]:
                await gw.publish(topic, body, qos=1)
        await asyncio.sleep(1.0)
        held = values - total()
        assert held > 0
        # Just arrived: within the grace, nothing.
        await cycle(settings, pool, time.time())
        assert await seq_alerts(pool) == {}
        # Held past the grace: missing from the database, and said so.
        await cycle(settings, pool, time.time() + SEQ_GRACE_S + 1)
        alerts = await seq_alerts(pool)
        assert alerts
        assert all(a["active"] for a in alerts.values())
        missing = sum(evidence(a)["readings_missing"] for a in alerts.values())
        assert 0 < missing <= held
        # The worker comes back with its client id and stores what the broker held for it.
        registries.append(await stack.enter_async_context(ingest_running(pool, second, mosquitto)))
        await wait_for(lambda: total() >= values)
        async with pool.acquire() as conn:
            rows = await conn.fetchval("SELECT count(*) FROM reading")
        assert rows == values
        later = time.time() + SEQ_GRACE_S + 60
        await cycle(settings, pool, later)
        await cycle(settings, pool, later + settings.deescalate_dwell_s + 60)
        alerts = await seq_alerts(pool)
    assert alerts
    assert all((a["active"], a["state"]) == (False, "closed") for a in alerts.values())
