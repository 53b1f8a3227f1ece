"""db/seq_gaps.py against a plain-Python reference, on random streams in a real PostgreSQL:
lost readings, device restarts, readings carrying a subset of the channels, readings
outside the window, and readings that arrived too recently to judge."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import asyncpg

from db.seq_gaps import seq_gaps

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=6)
SETTLED = NOW - timedelta(minutes=5)

Row = tuple[int, str, datetime, int, datetime]  # sensor, channel, ts, seq, received_at


def stream(rng: random.Random, sensor_id: int, channels: list[str]) -> list[Row]:
    """A device's readings over 8 h (some before the window), with losses and restarts."""
    rows: list[Row] = []
    seq = rng.randrange(0, 1000)
    t = NOW - timedelta(hours=8)
    while t < NOW:
        if rng.random() < 0.03:
            seq = rng.randrange(0, 5)  # restart: counts again from a low number
        if rng.random() >= 0.15:  # 15 % of readings lost
            received = t + timedelta(seconds=rng.choice([1, 30, 600, 3600]))
            received = min(received, NOW)
            subset = rng.sample(channels, rng.randint(1, len(channels)))
            rows += [(sensor_id, ch, t, seq, received) for ch in subset]
        seq += 1
        t += timedelta(minutes=rng.choice([5, 10, 10, 10]))
    return rows


def reference(rows: list[Row]) -> dict[int, tuple[int, int]]:
    """sensor -> (holes, readings missing), as the module documents it."""
    by_sensor: dict[int, dict[tuple[datetime, int], datetime]] = {}
    for sensor, _, ts, seq, received in rows:
        if SINCE < ts <= NOW:
            key = (ts, seq)
            readings = by_sensor.setdefault(sensor, {})
            readings[key] = min(readings.get(key, received), received)
    out: dict[int, tuple[int, int]] = {}
    for sensor, readings in by_sensor.items():
        ordered = sorted(readings.items())
        holes = missing = 0
        for ((_, a), ra), ((_, b), rb) in itertools.pairwise(ordered):
            if b > a + 1 and max(ra, rb) <= SETTLED:
                holes += 1
                missing += b - a - 1
        if holes:
            out[sensor] = (holes, missing)
    return out


async def test_holes_match_a_plain_reference_on_random_streams(loaded_dsn: str) -> None:
    conn = await asyncpg.connect(loaded_dsn)
    try:
        sensors = {r["id"]: list(r["channels"]) for r in await conn.fetch("SELECT id, channels FROM sensor")}
        found_any = 0
        for seed in range(12):
            rng = random.Random(seed)
            rows = [row for sid, channels in sensors.items() for row in stream(rng, sid, channels)]
            await conn.execute("TRUNCATE reading")
            await conn.copy_records_to_table(
                "reading",
                records=[(s, ch, ts, float(seq), seq, rec) for s, ch, ts, seq, rec in rows],
                columns=["sensor_id", "channel", "ts", "value", "seq", "received_at"],
            )
            got = await seq_gaps(conn, since=SINCE, until=NOW, settled_before=SETTLED)
            assert {g.sensor_id: (g.gaps, g.missing) for g in got} == reference(rows), f"seed {seed}"
            for g in got:
                assert len(g.examples) == min(g.gaps, 5)
                assert all(b > a + 1 for a, b in g.examples)
                assert SINCE < g.last_gap_at <= NOW
            found_any += len(got)
        assert found_any > 0  # the streams do have holes
    finally:
        await conn.close()
