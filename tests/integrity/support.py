"""Shared helpers of the integrity tests: readings written through ingest's data layer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db.integrity import SealPolicy
from db.pool import Conn
from db.readings import ReadingBatch, write_batch

T0 = datetime(2026, 11, 1, tzinfo=UTC)
#: Seal everything that is there: no settling, and every sensor counts as idle.
SEAL_ALL = SealPolicy(settle_s=0.0, idle_s=0.0, interval_s=0.05)
GNSS = ("east_mm", "north_mm", "up_mm")


async def sensor_id(conn: Conn, code: str) -> int:
    sid: int = await conn.fetchval("SELECT id FROM sensor WHERE code = $1", code)
    return sid


def us(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


async def write_hourly(
    conn: Conn, sid: int, hours: int, *, start: datetime = T0, channels: tuple[str, ...] = GNSS
) -> int:
    """One reading per hour (at hh:00) of every channel; values h + channel index / 10."""
    batch = ReadingBatch()
    for h in range(hours):
        t = us(start + timedelta(hours=h))
        for i, ch in enumerate(channels):
            batch.add(sid, ch, t, h + i / 10, h)
    return await write_batch(conn, batch, [])
