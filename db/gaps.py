"""Data gaps: stretches longer than ``factor`` x the sensor's registered interval without a reading.

A reading is a measurement time with a value of any registered channel. The gaps of a
window are found in SQL with ``lag`` over the distinct measurement times, joined with the
last reading before the window and the first after it, so a gap that crosses a window edge
is reported whole. A sensor silent up to now ends with an ``ongoing`` gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from db.pool import Conn

#: Default k: a gap is longer than k x interval_s. The registry's ``silent`` flag uses the same 3.
GAP_FACTOR = 3.0

# The nearest reading before $2 and at or after $3, channel by channel through the primary key.
BOUNDS = """
SELECT (SELECT max(x.ts) FROM unnest(s.channels) c(ch)
        CROSS JOIN LATERAL (SELECT r.ts FROM reading r WHERE r.sensor_id = s.id AND r.channel = c.ch AND r.ts < $2
                            ORDER BY r.ts DESC LIMIT 1) x) AS before,
       (SELECT min(x.ts) FROM unnest(s.channels) c(ch)
        CROSS JOIN LATERAL (SELECT r.ts FROM reading r WHERE r.sensor_id = s.id AND r.channel = c.ch AND r.ts >= $3
                            ORDER BY r.ts LIMIT 1) x) AS after,
       (SELECT min(r.ts) FROM reading r WHERE r.sensor_id = s.id AND r.channel = ANY(s.channels)
                                          AND r.ts >= $2 AND r.ts < $3) AS first,
       (SELECT max(r.ts) FROM reading r WHERE r.sensor_id = s.id AND r.channel = ANY(s.channels)
                                          AND r.ts >= $2 AND r.ts < $3) AS last,
       s.interval_s, now() AS now
FROM sensor s WHERE s.id = $1
"""

INNER_GAPS = """
WITH pts AS (
    SELECT r.ts FROM sensor s JOIN reading r ON r.sensor_id = s.id AND r.channel = ANY(s.channels)
    WHERE s.id = $1 AND r.ts >= $2 AND r.ts < $3
    UNION SELECT $4::timestamptz WHERE $4::timestamptz IS NOT NULL
    UNION SELECT $5::timestamptz WHERE $5::timestamptz IS NOT NULL
), ordered AS (
    SELECT ts, lag(ts) OVER (ORDER BY ts) AS prev FROM pts
)
SELECT prev AS gap_start, ts AS gap_end FROM ordered
WHERE ts - prev > make_interval(secs => $6)
ORDER BY prev
LIMIT $7
"""


@dataclass(frozen=True, slots=True)
class Gap:
    #: last reading before the gap (or the window start when ``open_start``)
    start: datetime
    #: first reading after the gap (or now when ``ongoing``)
    end: datetime
    expected_interval_s: float
    #: no reading before it: the gap starts at the window start or earlier
    open_start: bool = False
    #: no reading since: the sensor is silent now
    ongoing: bool = False

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


async def sensor_gaps(
    conn: Conn, sensor_id: int, start: datetime, end: datetime, *, factor: float = GAP_FACTOR, limit: int = 1000
) -> list[Gap]:
    """Gaps overlapping [start, end), oldest first, at most ``limit``."""
    b = await conn.fetchrow(BOUNDS, sensor_id, start, end)
    if b is None:
        return []
    interval_s: float = b["interval_s"]
    threshold = timedelta(seconds=factor * interval_s)
    now: datetime = b["now"]
    before: datetime | None = b["before"]
    after: datetime | None = b["after"]
    gaps: list[Gap] = []
    first = before or b["first"] or after
    if before is None and (first is None or first - start > threshold) and min(now, end) - start > threshold:
        gaps.append(Gap(start, first or now, interval_s, open_start=True, ongoing=first is None))
    rows = await conn.fetch(INNER_GAPS, sensor_id, start, end, before, after, factor * interval_s, limit)
    gaps.extend(Gap(r["gap_start"], r["gap_end"], interval_s) for r in rows)
    last = after or b["last"] or before
    if after is None and last is not None and now - last > threshold:
        gaps.append(Gap(last, now, interval_s, ongoing=True))
    return gaps[:limit]
