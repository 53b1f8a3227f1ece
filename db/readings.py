"""Readings: bulk writes from ingest, windows for the analysis, dead letters.

One statement per batch and table, never one per reading. Times cross the wire as
int64 epoch microseconds and become timestamptz in SQL, exactly (the product of an
integer and one microsecond is exact in float8 below 2**53 µs, i.e. until 2255).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from db.pool import Conn

_EPOCH = "timestamptz '1970-01-01 00:00:00+00'"
_TS = f"({_EPOCH} + u.t * interval '1 microsecond')"

INSERT_READINGS = f"""
INSERT INTO reading (sensor_id, channel, ts, value, seq)
SELECT u.s, u.c, {_TS}, u.v, u.q
FROM unnest($1::int4[], $2::text[], $3::int8[], $4::float8[], $5::int8[]) AS u(s, c, t, v, q)
ON CONFLICT (sensor_id, channel, ts) DO NOTHING
"""

UPSERT_LATEST = f"""
INSERT INTO sensor_latest (sensor_id, channel, ts, value)
SELECT u.s, u.c, {_TS}, u.v
FROM unnest($1::int4[], $2::text[], $3::int8[], $4::float8[]) AS u(s, c, t, v)
ON CONFLICT (sensor_id, channel) DO UPDATE
    SET ts = EXCLUDED.ts, value = EXCLUDED.value, received_at = now()
    WHERE sensor_latest.ts < EXCLUDED.ts
"""

# Runs before UPSERT_LATEST, so sensor_latest still holds the newest reading before this batch.
MARK_DIRTY = f"""
INSERT INTO sensor_dirty (sensor_id, min_ts, max_ts, late)
SELECT u.s, ({_EPOCH} + u.lo * interval '1 microsecond'), ({_EPOCH} + u.hi * interval '1 microsecond'),
       coalesce(({_EPOCH} + u.lo * interval '1 microsecond')
                < (SELECT max(l.ts) FROM sensor_latest l WHERE l.sensor_id = u.s), false)
FROM unnest($1::int4[], $2::int8[], $3::int8[]) AS u(s, lo, hi)
ON CONFLICT (sensor_id) DO UPDATE
    SET min_ts = least(sensor_dirty.min_ts, EXCLUDED.min_ts),
        max_ts = greatest(sensor_dirty.max_ts, EXCLUDED.max_ts),
        late = sensor_dirty.late OR EXCLUDED.late,
        gen = sensor_dirty.gen + 1
"""


def invalid_cte(sensors: str = "$1::int4[]") -> str:
    """A CTE ``inv``: the ranges currently marked invalid (migration 019) of the sensors in
    the SQL array ``sensors``, for :data:`INVALID`; small (corrections are rare), materialized once."""
    return f"""inv AS MATERIALIZED (
    SELECT sensor_id, channel, ts_from, ts_to FROM invalid_range WHERE sensor_id = ANY({sensors}))"""


#: Whether the reading ``r`` lies in a range of ``inv``. The first test is evaluated once per
#: statement (an init plan): without corrections, no reading pays for the second.
INVALID = """(EXISTS (SELECT 1 FROM inv) AND EXISTS (SELECT 1 FROM inv i WHERE i.sensor_id = r.sensor_id
              AND (i.channel IS NULL OR i.channel = r.channel) AND r.ts BETWEEN i.ts_from AND i.ts_to))"""

INSERT_DEAD_LETTERS = """
INSERT INTO dead_letter (topic, payload, payload_bytes, truncated, reason, detail, readings_rejected, readings_accepted)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::int4[], $4::bool[], $5::text[], $6::text[], $7::int4[], $8::int4[])
"""


@dataclass(slots=True)
class ReadingBatch:
    """Columnar readings waiting to be written (parallel lists)."""

    sensor_ids: list[int] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    t_us: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    seqs: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.t_us)

    def add(self, sensor_id: int, channel: str, t_us: int, value: float, seq: int | None) -> None:
        self.sensor_ids.append(sensor_id)
        self.channels.append(channel)
        self.t_us.append(t_us)
        self.values.append(value)
        self.seqs.append(seq)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    payload: bytes
    payload_bytes: int
    truncated: bool
    reason: str
    detail: str
    readings_rejected: int = 0
    readings_accepted: int = 0


async def write_batch(conn: Conn, batch: ReadingBatch, dead: list[DeadLetter]) -> int:
    """Store readings, newest values, dirty marks and dead letters in one transaction.

    Returns how many readings were new (the rest were duplicates of stored ones).
    """
    latest: dict[tuple[int, str], tuple[int, float]] = {}
    spans: dict[int, tuple[int, int]] = {}
    for sid, ch, t, v in zip(batch.sensor_ids, batch.channels, batch.t_us, batch.values, strict=True):
        key = (sid, ch)
        prev = latest.get(key)
        if prev is None or t > prev[0]:
            latest[key] = (t, v)
        span = spans.get(sid)
        if span is None:
            spans[sid] = (t, t)
        elif t < span[0] or t > span[1]:
            spans[sid] = (min(t, span[0]), max(t, span[1]))
    async with conn.transaction():
        inserted = 0
        if batch:
            status = await conn.execute(
                INSERT_READINGS, batch.sensor_ids, batch.channels, batch.t_us, batch.values, batch.seqs
            )
            inserted = int(status.rsplit(" ", 1)[1])
            # Sorted keys keep lock order stable across concurrent ingest workers (no deadlocks).
            sids = sorted(spans)
            await conn.execute(MARK_DIRTY, sids, [spans[s][0] for s in sids], [spans[s][1] for s in sids])
            keys = sorted(latest)
            await conn.execute(
                UPSERT_LATEST,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [latest[k][0] for k in keys],
                [latest[k][1] for k in keys],
            )
        if dead:
            await conn.execute(
                INSERT_DEAD_LETTERS,
                [d.topic for d in dead],
                [d.payload for d in dead],
                [d.payload_bytes for d in dead],
                [d.truncated for d in dead],
                [d.reason for d in dead],
                [d.detail for d in dead],
                [d.readings_rejected for d in dead],
                [d.readings_accepted for d in dead],
            )
    return inserted


@dataclass(frozen=True, slots=True)
class DirtySensor:
    sensor_id: int
    min_ts: datetime
    max_ts: datetime
    gen: int
    #: a reading older than the sensor's newest stored one arrived (out of order or late)
    late: bool
    #: corrections and re-baselines recorded since the last evaluation (db.references.mark_reevaluate)
    causes: tuple[dict[str, Any], ...] = ()


async def dirty_sensors(conn: Conn, limit: int) -> list[DirtySensor]:
    rows = await conn.fetch(
        "SELECT sensor_id, min_ts, max_ts, gen, late, causes::text AS causes FROM sensor_dirty ORDER BY min_ts LIMIT $1",
        limit,
    )
    return [
        DirtySensor(r["sensor_id"], r["min_ts"], r["max_ts"], r["gen"], r["late"], tuple(json.loads(r["causes"])))
        for r in rows
    ]


async def clear_dirty(conn: Conn, seen: list[DirtySensor]) -> None:
    """Forget the sensors whose mark has not changed since it was read."""
    await conn.execute(
        """DELETE FROM sensor_dirty d USING unnest($1::int4[], $2::int8[]) AS u(s, g)
           WHERE d.sensor_id = u.s AND d.gen = u.g""",
        [d.sensor_id for d in seen],
        [d.gen for d in seen],
    )


async def fetch_windows(
    conn: Conn, sensor_ids: list[int], since: datetime, until: datetime | None = None, *, with_invalid: bool = False
) -> list[asyncpg.Record]:
    """Rows (sensor_id, channel, t_s, value, invalid) ordered by sensor and time, for many
    sensors at once. Readings an operator marked invalid (``invalid_range``) are left out
    unless ``with_invalid``, which keeps them with ``invalid`` true."""
    return await conn.fetch(
        f"""WITH {invalid_cte()}
           SELECT r.sensor_id, r.channel, extract(epoch FROM r.ts)::float8 AS t_s, r.value, {INVALID} AS invalid
           FROM reading r
           WHERE r.sensor_id = ANY($1::int4[]) AND r.ts >= $2 AND ($3::timestamptz IS NULL OR r.ts <= $3)
             AND ($4 OR NOT {INVALID})
           ORDER BY r.sensor_id, r.ts""",
        sensor_ids,
        since,
        until,
        with_invalid,
    )
