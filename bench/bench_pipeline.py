"""End-to-end ingest throughput: MQTT (mosquitto) → ingest → PostgreSQL, in readings/s.

Baselines measured in the same run on the same machine: the payload decoder alone,
and the database write path alone (write_batch, no broker). The ratios say where the
time goes. Run: ``python -m bench.bench_pipeline [--messages N] [--per-message K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path

import aiomqtt
import asyncpg
from prometheus_client import CollectorRegistry

from core.registry import parse_registry
from core.settings import Settings
from core.wire import decode_message, readings_topic
from db.migrate import migrate
from db.pool import embedded_postgres, open_pool
from db.readings import ReadingBatch, write_batch
from db.registry import load_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService

SENSORS = 50


def registry_doc() -> dict[str, object]:
    sensors = [{"code": f"GN{i:03d}", "kind": "gnss", "interval_s": 600} for i in range(SENSORS)]
    return {
        "regions": [{"code": "220000", "name": "P"}, {"code": "220100", "name": "C"}, {"code": "220102", "name": "X"}],
        "mines": [
            {
                "code": "BENCH",
                "name": "bench",
                "kind": "open_pit",
                "region": "220102",
                "sites": [{"code": "BENCH-S", "name": "s", "kind": "slope", "sensors": sensors}],
            }
        ],
    }


def payloads(messages: int, per_message: int) -> list[tuple[str, bytes]]:
    t0 = int(time.time() * 1000) - messages * per_message * 1000
    out = []
    for m in range(messages):
        sensor = f"GN{m % SENSORS:03d}"
        base = t0 + (m // SENSORS) * per_message * 1000
        readings = [
            {"t": base + k * 1000, "v": {"east_mm": 1.0 + k, "north_mm": 2.0, "up_mm": -3.0}, "seq": k}
            for k in range(per_message)
        ]
        out.append((readings_topic("BENCH", sensor), json.dumps({"readings": readings}).encode()))
    return out


async def bench_decode(msgs: list[tuple[str, bytes]]) -> float:
    now_us = time.time_ns() // 1000
    started = time.perf_counter()
    n = 0
    for topic, payload in msgs:
        n += len(decode_message(topic, payload, now_us=now_us).readings)
    return n / (time.perf_counter() - started)


async def bench_db(dsn: str, settings: Settings, msgs: list[tuple[str, bytes]]) -> float:
    conn = await asyncpg.connect(dsn)
    ids = {r["code"]: r["id"] for r in await conn.fetch("SELECT code, id FROM sensor")}
    now_us = time.time_ns() // 1000
    batches: list[ReadingBatch] = [ReadingBatch()]
    for topic, payload in msgs:
        decoded = decode_message(topic, payload, now_us=now_us)
        sid = ids[decoded.topic.sensor]
        for r in decoded.readings:
            for ch, v in r.values.items():
                batches[-1].add(sid, ch, r.t_us, v, r.seq)
        if len(batches[-1]) >= settings.batch_max_rows:
            batches.append(ReadingBatch())
    readings = sum(len(b) for b in batches) / 3
    started = time.perf_counter()
    for b in batches:
        await write_batch(conn, b, [])
    elapsed = time.perf_counter() - started
    await conn.execute("TRUNCATE reading, sensor_latest, sensor_dirty")
    await conn.close()
    return readings / elapsed


async def bench_pipeline(dsn: str, settings: Settings, port: int, msgs: list[tuple[str, bytes]], per: int) -> float:
    metrics = CollectorRegistry()
    async with open_pool(dsn, settings) as pool:
        from core.settings import MqttTarget

        service = IngestService(settings, pool, MqttTarget("127.0.0.1", port), IngestMetrics(metrics))
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.connected.wait(), 10)
        expected = len(msgs) * per * 3
        started = time.perf_counter()
        async with aiomqtt.Client(
            "127.0.0.1", port, identifier=f"bench-{uuid.uuid4().hex[:6]}", max_inflight_messages=1000
        ) as client:
            for i in range(0, len(msgs), 500):
                await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in msgs[i : i + 500]))
        published = time.perf_counter() - started
        while (metrics.get_sample_value("slopewatch_ingest_readings_stored_total") or 0) < expected:  # noqa: ASYNC110 (polling a counter)
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        service.stop()
        await task
    print(f"  publishing took {published:.2f} s of the {elapsed:.2f} s")
    return len(msgs) * per / elapsed


async def main(messages: int, per_message: int) -> None:
    from tests.conftest import Mosquitto

    msgs = payloads(messages, per_message)
    with tempfile.TemporaryDirectory() as tmp, embedded_postgres(Path(tmp)) as dsn:
        settings = Settings(data_dir=Path(tmp), mqtt_shared_group="", mqtt_client_id="bench-ingest", metrics_port=0)
        conn = await asyncpg.connect(dsn)
        await migrate(conn, timescaledb="off")
        await load_registry(conn, parse_registry(registry_doc()))
        await conn.close()
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            n = messages * per_message
            print(f"{messages} messages x {per_message} readings (3 channels each) = {n} readings")
            decode_rate = await bench_decode(msgs)
            db_rate = await bench_db(dsn, settings, msgs)
            e2e_rate = await bench_pipeline(dsn, settings, broker.port, msgs, per_message)
        finally:
            broker.stop()
    print(f"decode only            {decode_rate:12,.0f} readings/s")
    print(f"database only          {db_rate:12,.0f} readings/s   (write_batch, one connection)")
    print(f"MQTT→ingest→database   {e2e_rate:12,.0f} readings/s   = {e2e_rate / db_rate:.2f} x database-only")


if __name__ == "__main__":
    # aiomqtt warns for every publish beyond 10 in flight; in flight is the point here.
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--per-message", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.per_message))
