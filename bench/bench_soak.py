"""Soak: a steady load through mosquitto and ``slopewatch ingest`` (a real subprocess) into an
embedded PostgreSQL for N minutes. Does ingest's memory stay flat, does it keep up?

Every 30 s it prints the readings published and stored, the ingest process's resident
memory (from /proc), the backlog (published but not yet stored) and the lag: how old the
newest stored reading is (each reading's measurement time is its publish time, so this is
publish-to-stored latency plus at most one message interval). At the end it waits for the
backlog to drain, checks that every published reading was stored exactly once, and gives a
verdict on memory (first third against last third, and the slope) and lag.

Run: ``python -m bench.bench_soak [--minutes 10] [--rate 2000] [--per-message 10]``
(rate in readings per second; each reading holds 3 channel values, stored as 3 rows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import asyncpg
import httpx

from cli.runtime import free_port
from core.registry import parse_registry
from core.wire import readings_topic
from db.migrate import migrate
from db.pool import embedded_postgres
from db.registry import load_registry

SENSORS = 50
CHANNELS = 3
REPORT_EVERY_S = 30.0
SAMPLE_EVERY_S = 5.0
REPO = Path(__file__).resolve().parents[1]
SLOPEWATCH = Path(sys.executable).with_name("slopewatch")


def registry_doc() -> dict[str, object]:
    sensors = [{"code": f"GN{i:03d}", "kind": "gnss", "interval_s": 60} for i in range(SENSORS)]
    return {
        "regions": [{"code": "220000", "name": "P"}, {"code": "220100", "name": "C"}, {"code": "220102", "name": "X"}],
        "mines": [
            {
                "code": "SOAK",
                "name": "soak",
                "kind": "open_pit",
                "region": "220102",
                "sites": [{"code": "SOAK-S", "name": "s", "kind": "slope", "sensors": sensors}],
            }
        ],
    }


@dataclass
class Publisher:
    """Publishes ``rate`` readings/s, ``per_message`` to a message, round-robin over the sensors.
    The measurement times of a message end at its publish time, 1 ms apart, never repeating."""

    port: int
    rate: float
    per_message: int
    published: int = 0  # readings acknowledged by the broker
    _last_t_ms: dict[int, int] = field(default_factory=dict)
    _next_sensor: int = 0

    def _message(self) -> tuple[str, bytes]:
        sensor = self._next_sensor
        self._next_sensor = (sensor + 1) % SENSORS
        now_ms = int(time.time() * 1000)
        t = max(now_ms - self.per_message + 1, self._last_t_ms.get(sensor, 0) + 1)
        readings = []
        for k in range(self.per_message):
            readings.append({"t": t + k, "v": {"east_mm": 1.0 + k, "north_mm": 2.0, "up_mm": -3.0}, "seq": t + k})
        self._last_t_ms[sensor] = t + self.per_message - 1
        return readings_topic("SOAK", f"GN{sensor:03d}"), json.dumps({"readings": readings}).encode()

    async def run(self, until: float) -> None:
        messages_per_s = self.rate / self.per_message
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"soak-gw-{uuid.uuid4().hex[:6]}", max_inflight_messages=1000
        ) as client:
            started = time.monotonic()
            sent = 0
            while (now := time.monotonic()) < until:
                due = int((now - started) * messages_per_s) - sent
                if due > 0:
                    batch = [self._message() for _ in range(min(due, 1000))]
                    await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in batch))
                    sent += len(batch)
                    self.published += len(batch) * self.per_message
                else:
                    await asyncio.sleep(0.01)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def stored_rows(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("slopewatch_ingest_readings_stored_total "):
            return float(line.split()[1])
    return 0.0


async def lag_s(conn: asyncpg.Connection) -> tuple[float, float]:
    """(age of the newest stored reading, worst publish-to-write latency of each sensor's newest)."""
    row = await conn.fetchrow(
        """SELECT extract(epoch FROM now() - max(ts)) AS fresh,
                  extract(epoch FROM max(received_at - ts)) AS worst FROM sensor_latest"""
    )
    if row is None or row["fresh"] is None:
        return float("nan"), float("nan")
    return float(row["fresh"]), float(row["worst"])


def text_of(path: Path) -> str:
    return path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def ingest_process(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(str(SLOPEWATCH), "ingest", env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while "ingest subscribed" not in (text := text_of(log)):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("slopewatch ingest did not subscribe:\n" + text[-3000:])
            await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 60)


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    backlog: float  # readings
    fresh_s: float


def slope_per_min(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope * 60


async def soak(minutes: float, rate: float, per_message: int) -> int:
    from tests.conftest import Mosquitto

    with tempfile.TemporaryDirectory(prefix="slopewatch-soak-") as tmp, embedded_postgres(Path(tmp) / "pg") as dsn:
        conn = await asyncpg.connect(dsn)
        await migrate(conn, timescaledb="off")
        await load_registry(conn, parse_registry(registry_doc()))
        (Path(tmp) / "mqtt").mkdir()
        broker = Mosquitto(Path(tmp) / "mqtt")
        broker.start()
        metrics_port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SLOPEWATCH_")},
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": dsn,
            "MQTT_URL": broker.url,
            "SLOPEWATCH_MQTT_CLIENT_ID": "soak-ingest",
            "SLOPEWATCH_MQTT_SHARED_GROUP": "",
            "SLOPEWATCH_METRICS_PORT": str(metrics_port),
        }
        samples: list[Sample] = []
        try:
            async with (
                ingest_process(env, Path(tmp) / "ingest.log") as proc,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}") as http,
            ):
                publisher = Publisher(broker.port, rate, per_message)
                started = time.monotonic()
                until = started + minutes * 60
                publishing = asyncio.create_task(publisher.run(until), name="soak-publisher")
                print(
                    f"soak: {minutes:g} min at {rate:,.0f} readings/s ({per_message} per message, "
                    f"{CHANNELS} channels each), {SENSORS} sensors; ingest pid {proc.pid}",
                    flush=True,
                )
                print(
                    f"{'t':>6} {'published':>11} {'stored':>11} {'rss MB':>7} {'backlog':>9} {'lag s':>6} {'worst s':>7}"
                )
                next_report = started + REPORT_EVERY_S
                while not publishing.done():
                    await asyncio.sleep(SAMPLE_EVERY_S)
                    if publishing.done():
                        break
                    now = time.monotonic()
                    stored = await stored_rows(http) / CHANNELS
                    fresh, worst = await lag_s(conn)
                    sample = Sample(now - started, rss_mb(proc.pid), publisher.published - stored, fresh)
                    samples.append(sample)
                    if now >= next_report:
                        next_report += REPORT_EVERY_S
                        print(
                            f"{sample.t_s:6.0f} {publisher.published:11,} {stored:11,.0f} {sample.rss_mb:7.1f} "
                            f"{sample.backlog:9,.0f} {fresh:6.2f} {worst:7.2f}",
                            flush=True,
                        )
                await publishing
                drain_started = time.monotonic()
                while await stored_rows(http) / CHANNELS < publisher.published:
                    if time.monotonic() - drain_started > 120:
                        break
                    await asyncio.sleep(0.2)
                drained_s = time.monotonic() - drain_started
                stored = await stored_rows(http) / CHANNELS
                rows = await conn.fetchval("SELECT count(*) FROM reading")
                final_rss = rss_mb(proc.pid)
        finally:
            broker.stop()
            await conn.close()
    return report(samples, publisher.published, stored, rows, drained_s, final_rss, rate, minutes * 60)


def report(
    samples: list[Sample],
    published: int,
    stored: float,
    rows: int,
    drained_s: float,
    final_rss: float,
    rate: float,
    elapsed: float,
) -> int:
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    rss_first = statistics.mean(s.rss_mb for s in first)
    rss_last = statistics.mean(s.rss_mb for s in last)
    # The first minute is warm-up (imports, pools, caches); the slope is taken after it.
    steady = [s for s in samples if s.t_s >= 60] or samples
    rss_slope = slope_per_min([s.t_s for s in steady], [s.rss_mb for s in steady])
    backlog_first = statistics.mean(s.backlog for s in first)
    backlog_last = statistics.mean(s.backlog for s in last)
    backlog_slope = slope_per_min([s.t_s for s in steady], [s.backlog for s in steady])
    lag_last_max = max(s.fresh_s for s in last)
    print()
    print(f"published {published:,} readings in {elapsed:.0f} s ({published / max(elapsed, 1):,.0f}/s)")
    print(
        f"stored    {stored:,.0f} readings ({rows:,} rows); backlog drained {drained_s:.1f} s after publishing stopped"
    )
    lost = published * CHANNELS - rows
    print(f"lost      {lost:,} rows" + ("" if lost == 0 else "  <-- every published reading should be stored"))
    print(
        f"ingest RSS: first third {rss_first:.1f} MB, last third {rss_last:.1f} MB "
        f"({rss_last - rss_first:+.1f} MB), slope after the first minute {rss_slope:+.2f} MB/min, "
        f"at the end {final_rss:.1f} MB"
    )
    print(
        f"backlog: first third {backlog_first:,.0f}, last third {backlog_last:,.0f} readings, "
        f"slope {backlog_slope:+,.0f} readings/min; newest reading at most {lag_last_max:.2f} s old in the last third"
    )
    # Flat: the last third within 10 % (and 20 MB) of the first, and no backlog that grows by
    # more than a second of load per minute or leaves readings older than 10 s.
    memory_flat = rss_last - rss_first <= min(0.10 * rss_first, 20.0)
    lag_flat = backlog_slope <= rate and lag_last_max < 10.0
    print(f"verdict: memory {'FLAT' if memory_flat else 'GROWING'}, lag {'FLAT' if lag_flat else 'GROWING'}")
    return 0 if memory_flat and lag_flat and lost == 0 else 1


if __name__ == "__main__":
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="readings per second (3 channel values each)")
    parser.add_argument("--per-message", type=int, default=10)
    args = parser.parse_args()
    sys.exit(asyncio.run(soak(args.minutes, args.rate, args.per_message)))
