"""Ingest against a real mosquitto and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import aiomqtt
import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from core.settings import Settings
from core.wire import RejectReason, readings_topic
from db.pool import open_pool
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from tests.conftest import Mosquitto, wait_for

NOW_MS = int(time.time() * 1000)
HOUR_MS = 3_600_000


def sample(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


@pytest.fixture
async def ingest(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> AsyncIterator[tuple[IngestService, CollectorRegistry, asyncpg.Pool]]:
    registry = CollectorRegistry()
    async with open_pool(loaded_dsn, settings) as pool:
        service = IngestService(settings, pool, mosquitto.target, IngestMetrics(registry))
        task = asyncio.create_task(service.run(), name="ingest-under-test")
        await asyncio.wait_for(service.connected.wait(), 10)
        yield service, registry, pool
        service.stop()
        await asyncio.wait_for(task, 15)


async def publish(mosquitto: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"pub-{uuid.uuid4().hex[:8]}") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def gnss(t_ms: int, east: float, seq: int | None = None) -> dict[str, object]:
    item: dict[str, object] = {"t": t_ms, "v": {"east_mm": east, "north_mm": 0.5, "up_mm": -1.0}}
    if seq is not None:
        item["seq"] = seq
    return item


async def test_duplicates_and_out_of_order_are_stored_once_in_time_order(
    ingest: tuple[IngestService, CollectorRegistry, asyncpg.Pool], mosquitto: Mosquitto
) -> None:
    _, registry, pool = ingest
    topic = readings_topic("M1", "GN01")
    times = [NOW_MS - k * HOUR_MS for k in range(10)]  # newest first: out of order
    batches = [
        {"readings": [gnss(t, float(i), seq=i) for i, t in enumerate(times[:6])]},
        {"readings": [gnss(t, float(i + 6), seq=i + 6) for i, t in enumerate(times[6:])]},
        {"readings": [gnss(times[2], 2.0, seq=2), gnss(times[8], 8.0, seq=8)]},  # redelivered
    ]
    messages = [(topic, json.dumps(b).encode()) for b in batches]
    messages.append(messages[0])  # a whole message delivered twice
    await publish(mosquitto, messages)
    await wait_for(lambda: sample(registry, "slopewatch_ingest_messages_received_total") == 4)
    await wait_for(lambda: sample(registry, "slopewatch_ingest_readings_stored_total") == 30)
    await wait_for(lambda: sample(registry, "slopewatch_ingest_readings_duplicate_total") == 24)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT r.ts, r.value, r.seq FROM reading r JOIN sensor s ON s.id = r.sensor_id
               WHERE s.code = 'GN01' AND r.channel = 'east_mm' ORDER BY r.ts"""
        )
        latest = await conn.fetchrow("SELECT ts, value FROM sensor_latest WHERE channel = 'east_mm'")
    assert [int(r["ts"].timestamp() * 1000) for r in rows] == sorted(times)
    assert [r["value"] for r in rows] == [float(i) for i in reversed(range(10))]
    assert latest["value"] == 0.0
    assert int(latest["ts"].timestamp() * 1000) == times[0]


async def test_each_malformed_class_is_rejected_counted_and_dead_lettered(
    ingest: tuple[IngestService, CollectorRegistry, asyncpg.Pool], mosquitto: Mosquitto
) -> None:
    _, registry, pool = ingest
    good = readings_topic("M1", "GN01")
    bad_cases: list[tuple[RejectReason, str, bytes]] = [
        (RejectReason.MALFORMED_JSON, good, b"{oops"),
        (RejectReason.BAD_SCHEMA, good, b'{"readings": "many"}'),
        (RejectReason.UNKNOWN_SENSOR, readings_topic("M1", "NOPE"), json.dumps(gnss(NOW_MS, 1)).encode()),
        (RejectReason.UNKNOWN_SENSOR, readings_topic("M1T", "GN01"), json.dumps(gnss(NOW_MS, 1)).encode()),
        (RejectReason.MISSING_TIMESTAMP, good, b'{"v": {"east_mm": 1}}'),
        (RejectReason.BAD_TIMESTAMP, good, b'{"t": "2026-13-45", "v": {"east_mm": 1}}'),
        (RejectReason.FUTURE_TIMESTAMP, good, json.dumps(gnss(NOW_MS + 48 * HOUR_MS, 1)).encode()),
        (RejectReason.NON_FINITE_VALUE, good, b'{"t": %d, "v": {"east_mm": NaN}}' % NOW_MS),
        (RejectReason.UNKNOWN_CHANNEL, good, json.dumps({"t": NOW_MS, "v": {"width_mm": 1}}).encode()),
        (RejectReason.OVERSIZED_PAYLOAD, good, b'{"pad": "' + b"x" * (300 * 1024) + b'"}'),
        (RejectReason.TOPIC_MISMATCH, good, json.dumps({"sensor": "PZ01", **gnss(NOW_MS, 1)}).encode()),
        (RejectReason.BAD_TOPIC, "slopewatch/v1/M1/GN01/reading", json.dumps(gnss(NOW_MS, 1)).encode()),
    ]
    mixed = {"readings": [gnss(NOW_MS - HOUR_MS, 3.0), {"t": NOW_MS, "v": {"east_mm": "x"}}]}
    messages = [(topic, payload) for _, topic, payload in bad_cases]
    messages.append((good, json.dumps(mixed).encode()))
    messages.append((good, json.dumps(gnss(NOW_MS - 2 * HOUR_MS, 4.0)).encode()))  # still running afterwards
    # The wrong-suffix topic is outside the subscription: ingest never sees it.
    seen = len(messages) - 1
    await publish(mosquitto, messages)
    await wait_for(lambda: sample(registry, "slopewatch_ingest_messages_received_total") == seen)
    await wait_for(lambda: sample(registry, "slopewatch_ingest_dead_letters_total") == seen - 1)
    for reason, _, _ in bad_cases[:-1]:
        expected = sum(1 for r, _, _ in bad_cases[:-1] if r is reason)
        assert sample(registry, "slopewatch_ingest_rejected_total", {"reason": reason.value}) == expected, reason
    assert sample(registry, "slopewatch_ingest_rejected_total", {"reason": "bad_value"}) == 1
    async with pool.acquire() as conn:
        dead = await conn.fetch("SELECT reason, detail, truncated, payload_bytes, readings_accepted FROM dead_letter")
        stored = await conn.fetchval("SELECT count(*) FROM reading WHERE channel = 'east_mm'")
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == sorted([r.value for r, _, _ in bad_cases[:-1]] + ["bad_value"])
    assert all(d["detail"] for d in dead)
    oversized = next(d for d in dead if d["reason"] == "oversized_payload")
    assert oversized["truncated"]
    assert oversized["payload_bytes"] > 300 * 1024
    assert next(d for d in dead if d["reason"] == "bad_value")["readings_accepted"] == 1
    assert stored == 2  # the good reading of the mixed message, and the one after


async def test_unacknowledged_messages_are_redelivered_after_a_crash(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    """A worker that dies before committing leaves its messages with the broker."""
    registry = CollectorRegistry()
    topic = readings_topic("M1", "GN01")
    # Long batch age: the first worker receives but never commits before it is killed.
    slow = settings.with_(batch_max_age_ms=60_000)
    async with open_pool(loaded_dsn, settings) as pool:
        first = IngestService(slow, pool, mosquitto.target, IngestMetrics(registry))
        task = asyncio.create_task(first.run())
        await asyncio.wait_for(first.connected.wait(), 10)
        await publish(mosquitto, [(topic, json.dumps(gnss(NOW_MS - k * HOUR_MS, k)).encode()) for k in range(20)])
        await wait_for(lambda: sample(registry, "slopewatch_ingest_messages_received_total") == 20)
        task.cancel()  # like a crash: no flush, no acknowledgement, socket closed
        with pytest.raises(asyncio.CancelledError):
            await task
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM reading") == 0
        registry2 = CollectorRegistry()
        second = IngestService(settings, pool, mosquitto.target, IngestMetrics(registry2))
        task2 = asyncio.create_task(second.run())
        await wait_for(lambda: sample(registry2, "slopewatch_ingest_readings_stored_total") == 60)
        second.stop()
        await asyncio.wait_for(task2, 15)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(DISTINCT ts) FROM reading") == 20


async def test_two_workers_in_a_shared_subscription_split_the_load(
    loaded_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    registries = [CollectorRegistry(), CollectorRegistry()]
    async with open_pool(loaded_dsn, settings) as pool:
        workers = [
            IngestService(
                settings.with_(mqtt_shared_group=group, mqtt_client_id=f"{group}-w{i}"),
                pool,
                mosquitto.target,
                IngestMetrics(registries[i]),
            )
            for i in range(2)
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        for w in workers:
            await asyncio.wait_for(w.connected.wait(), 10)
        topic = readings_topic("M1", "GN01")
        await publish(mosquitto, [(topic, json.dumps(gnss(NOW_MS - k * 60_000, k)).encode()) for k in range(200)])

        def received(i: int) -> float:
            return sample(registries[i], "slopewatch_ingest_messages_received_total")

        await wait_for(lambda: received(0) + received(1) == 200)
        await wait_for(lambda: sum(sample(r, "slopewatch_ingest_readings_stored_total") for r in registries) == 600)
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(DISTINCT ts) FROM reading") == 200
    assert received(0) > 0
    assert received(1) > 0
