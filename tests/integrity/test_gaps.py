"""Gaps: stretches longer than k x the registered interval without readings."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from db.gaps import Gap, sensor_gaps
from db.readings import ReadingBatch, write_batch
from tests.integrity.support import T0, sensor_id, us

H = timedelta(hours=1)


async def _write(conn: asyncpg.Connection, sid: int, hours: list[int], channel: str = "depth_m") -> None:
    batch = ReadingBatch()
    for h in hours:
        batch.add(sid, channel, us(T0 + h * H), 9.0, h)
    await write_batch(conn, batch, [])


async def test_inner_edge_and_trailing_gaps(loaded_dsn: str) -> None:
    conn = await asyncpg.connect(loaded_dsn)
    try:
        sid = await sensor_id(conn, "PZ01")  # interval_s 3600: a gap is longer than 3 h
        # 0..9 hourly, nothing 10..13 (9 -> 14: 5 h), 14..20, then 24 (20 -> 24: 4 h, not 3 h exactly)
        await _write(conn, sid, [*range(10), *range(14, 21), 23, 24])
        gaps = await sensor_gaps(conn, sid, T0, T0 + 30 * H)
        assert gaps[0] == Gap(T0 + 9 * H, T0 + 14 * H, 3600.0)
        assert gaps[0].duration_s == 5 * 3600
        # 20 -> 23 is exactly 3 h: not a gap. The sensor has been silent since hour 24.
        assert len(gaps) == 2
        assert gaps[1].start == T0 + 24 * H
        assert gaps[1].ongoing
        assert not gaps[1].open_start
        # A window inside the gap reports the whole gap, found through the readings around it.
        inside = await sensor_gaps(conn, sid, T0 + 10 * H, T0 + 12 * H)
        assert inside == [Gap(T0 + 9 * H, T0 + 14 * H, 3600.0)]
        # A larger k hides the 5 h gap; the limit cuts the list.
        assert [g.start for g in await sensor_gaps(conn, sid, T0, T0 + 30 * H, factor=6)] == [T0 + 24 * H]
        assert len(await sensor_gaps(conn, sid, T0, T0 + 30 * H, limit=1)) == 1
        # Before the first reading ever: an open-start gap from the window start.
        before = await sensor_gaps(conn, sid, T0 - 10 * H, T0 + 5 * H)
        assert before == [Gap(T0 - 10 * H, T0, 3600.0, open_start=True)]
        # A sensor that never reported: one gap from the window start to now.
        never = await sensor_gaps(conn, await sensor_id(conn, "PL01"), T0, T0 + 5 * H)
        assert [(g.start, g.open_start, g.ongoing) for g in never] == [(T0, True, True)]
    finally:
        await conn.close()
